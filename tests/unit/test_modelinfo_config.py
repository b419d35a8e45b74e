"""Config facts over real-world config.json files (values as published on the model cards).

Aspects covered:
- per family: model_type, architecture, context length, capabilities, quantization label,
  vision, embedding and MoE facts, for Llama 3.x, Llama 4, Mistral, Mixtral, Qwen2.5 (and
  AWQ/GPTQ), Qwen3 (and FP8, MoE, embedding), DeepSeek-V3, Kimi K2, Gemma 2/3, Phi, Phi-3,
  Phi-3-vision, PhiMoE, gpt-oss, Mllama, LLaVA, Qwen2-VL, Qwen2.5-VL, Qwen3-VL, InternVL,
  BERT/BGE/E5/MiniLM, a reranker, Whisper, and an unknown family read generically;
- the OME mistakes not reproduced (Mistral chat is not an embedding; Gemma 3 is 128k);
- quantization parsing (fp8, fbgemm_fp8, awq, gptq, mxfp4, bitsandbytes, compressed-tensors);
- JSON with Infinity/NaN literals, a BOM, non-objects, deep nesting and huge integers;
- diffusers model_index.json facts and capabilities.
"""

from __future__ import annotations

from typing import Any

import pytest

from model_agent import errors
from model_agent.modelinfo import capabilities, config, families

T2T, EMB, ITT = ["TEXT_TO_TEXT"], ["EMBEDDING"], ["IMAGE_TEXT_TO_TEXT"]

LLAMA_3_1_8B = {
    "architectures": ["LlamaForCausalLM"],
    "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 131072,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
        "rope_type": "llama3",
    },
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0",
    "vocab_size": 128256,
}
LLAMA_3_2_1B = {
    **LLAMA_3_1_8B,
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "tie_word_embeddings": True,
    "transformers_version": "4.45.0.dev0",
}
LLAMA_3_3_70B = {
    **LLAMA_3_1_8B,
    "hidden_size": 8192,
    "intermediate_size": 28672,
    "num_attention_heads": 64,
    "num_hidden_layers": 80,
    "transformers_version": "4.47.0.dev0",
}
MISTRAL_7B_INSTRUCT_V03 = {
    "architectures": ["MistralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rope_theta": 1000000.0,
    "sliding_window": None,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.42.0.dev0",
    "vocab_size": 32768,
}
MIXTRAL_8X7B = {
    "architectures": ["MixtralForCausalLM"],
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "max_position_embeddings": 32768,
    "model_type": "mixtral",
    "num_experts_per_tok": 2,
    "num_local_experts": 8,
    "num_hidden_layers": 32,
    "router_aux_loss_coef": 0.02,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.36.0.dev0",
    "vocab_size": 32000,
}
QWEN2_5_7B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "max_position_embeddings": 32768,
    "max_window_layers": 28,
    "model_type": "qwen2",
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "sliding_window": 131072,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.1",
    "use_sliding_window": False,
    "vocab_size": 152064,
}
QWEN2_5_7B_AWQ = {
    **QWEN2_5_7B,
    "torch_dtype": "float16",
    "quantization_config": {
        "bits": 4,
        "group_size": 128,
        "modules_to_not_convert": None,
        "quant_method": "awq",
        "version": "gemm",
        "zero_point": True,
    },
}
QWEN2_5_72B_GPTQ_INT4 = {
    **QWEN2_5_7B,
    "hidden_size": 8192,
    "num_hidden_layers": 80,
    "torch_dtype": "float16",
    "quantization_config": {
        "bits": 4,
        "damp_percent": 0.01,
        "desc_act": False,
        "group_size": 128,
        "quant_method": "gptq",
        "static_groups": False,
        "sym": True,
        "true_sequential": True,
    },
}
QWEN3_8B = {
    "architectures": ["Qwen3ForCausalLM"],
    "head_dim": 128,
    "hidden_size": 4096,
    "intermediate_size": 12288,
    "max_position_embeddings": 40960,
    "model_type": "qwen3",
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "num_key_value_heads": 8,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "vocab_size": 151936,
}
QWEN3_8B_FP8 = {
    **QWEN3_8B,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
}
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"],
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "max_position_embeddings": 40960,
    "model_type": "qwen3_moe",
    "moe_intermediate_size": 768,
    "norm_topk_prob": True,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 48,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0",
    "vocab_size": 151936,
}
QWEN3_235B_2507 = {**QWEN3_30B_A3B, "max_position_embeddings": 262144, "hidden_size": 4096}
QWEN3_EMBEDDING_8B = {**QWEN3_8B, "max_position_embeddings": 32768}
DEEPSEEK_V3 = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"},
    "first_k_dense_replace": 3,
    "hidden_size": 7168,
    "intermediate_size": 18432,
    "kv_lora_rank": 512,
    "max_position_embeddings": 163840,
    "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048,
    "n_routed_experts": 256,
    "n_shared_experts": 1,
    "num_experts_per_tok": 8,
    "num_hidden_layers": 61,
    "quantization_config": {
        "activation_scheme": "dynamic",
        "fmt": "e4m3",
        "quant_method": "fp8",
        "weight_block_size": [128, 128],
    },
    "rope_scaling": {
        "beta_fast": 32,
        "beta_slow": 1,
        "factor": 40,
        "mscale": 1.0,
        "mscale_all_dim": 1.0,
        "original_max_position_embeddings": 4096,
        "type": "yarn",
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1",
    "vocab_size": 129280,
}
KIMI_K2 = {
    **DEEPSEEK_V3,
    "model_type": "kimi_k2",
    "max_position_embeddings": 131072,
    "n_routed_experts": 384,
    "transformers_version": "4.48.3",
    "vocab_size": 163840,
}
GEMMA_2_9B = {
    "architectures": ["Gemma2ForCausalLM"],
    "attn_logit_softcapping": 50.0,
    "final_logit_softcapping": 30.0,
    "head_dim": 256,
    "hidden_size": 3584,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "gemma2",
    "num_hidden_layers": 42,
    "query_pre_attn_scalar": 256,
    "sliding_window": 4096,
    "torch_dtype": "float32",
    "transformers_version": "4.42.0.dev0",
    "vocab_size": 256000,
}
GEMMA_3_4B = {
    "architectures": ["Gemma3ForConditionalGeneration"],
    "boi_token_index": 255999,
    "eoi_token_index": 256000,
    "eos_token_id": [1, 106],
    "image_token_index": 262144,
    "mm_tokens_per_image": 256,
    "model_type": "gemma3",
    "text_config": {
        "hidden_size": 2560,
        "intermediate_size": 10240,
        "model_type": "gemma3_text",
        "num_hidden_layers": 34,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
    "vision_config": {
        "hidden_size": 1152,
        "image_size": 896,
        "model_type": "siglip_vision_model",
        "num_hidden_layers": 27,
        "patch_size": 14,
    },
}
GEMMA_3_27B = {
    **GEMMA_3_4B,
    "text_config": {
        "hidden_size": 5376,
        "intermediate_size": 21504,
        "model_type": "gemma3_text",
        "num_attention_heads": 32,
        "num_hidden_layers": 62,
        "num_key_value_heads": 16,
        "query_pre_attn_scalar": 168,
        "rope_scaling": {"factor": 8.0, "rope_type": "linear"},
        "sliding_window": 1024,
    },
}
GEMMA_3_1B = {
    "architectures": ["Gemma3ForCausalLM"],
    "hidden_size": 1152,
    "max_position_embeddings": 32768,
    "model_type": "gemma3_text",
    "num_hidden_layers": 26,
    "rope_scaling": None,
    "sliding_window": 512,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.50.0.dev0",
}
PHI_2 = {
    "architectures": ["PhiForCausalLM"],
    "hidden_size": 2560,
    "max_position_embeddings": 2048,
    "model_type": "phi",
    "num_hidden_layers": 32,
    "torch_dtype": "float16",
    "transformers_version": "4.37.0",
}
PHI_3_MINI_4K = {
    "architectures": ["Phi3ForCausalLM"],
    "hidden_size": 3072,
    "max_position_embeddings": 4096,
    "model_type": "phi3",
    "num_hidden_layers": 32,
    "original_max_position_embeddings": 4096,
    "sliding_window": 2047,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.40.2",
}
PHI_3_MINI_128K = {
    **PHI_3_MINI_4K,
    "max_position_embeddings": 131072,
    "rope_scaling": {"long_factor": [1.07, 1.1], "short_factor": [1.05, 1.05], "type": "longrope"},
    "sliding_window": 262144,
}
PHI_3_5_VISION = {
    "architectures": ["Phi3VForCausalLM"],
    "embd_layer": {
        "embedding_cls": "image",
        "hd_transform_order": "sub_glb",
        "use_hd_transform": True,
    },
    "img_processor": {"image_dim_out": 1024, "model_name": "openai/clip-vit-large-patch14-336"},
    "max_position_embeddings": 131072,
    "model_type": "phi3_v",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.38.1",
}
PHI_3_5_MOE = {
    "architectures": ["PhiMoEForCausalLM"],
    "max_position_embeddings": 131072,
    "model_type": "phimoe",
    "num_experts_per_tok": 2,
    "num_local_experts": 16,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.43.3",
}
GPT_OSS_120B = {
    "architectures": ["GptOssForCausalLM"],
    "experts_per_token": 4,
    "hidden_size": 2880,
    "max_position_embeddings": 131072,
    "model_type": "gpt_oss",
    "num_experts_per_tok": 4,
    "num_hidden_layers": 36,
    "num_local_experts": 128,
    "quantization_config": {
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
        "quant_method": "mxfp4",
    },
    "rope_scaling": {
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "factor": 32.0,
        "original_max_position_embeddings": 4096,
        "rope_type": "yarn",
        "truncate": False,
    },
    "sliding_window": 128,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.55.0.dev0",
    "vocab_size": 201088,
}
GPT_OSS_20B = {**GPT_OSS_120B, "num_hidden_layers": 24, "num_local_experts": 32}
LLAMA_4_SCOUT = {
    "architectures": ["Llama4ForConditionalGeneration"],
    "boi_token_index": 200080,
    "model_type": "llama4",
    "text_config": {
        "hidden_size": 5120,
        "intermediate_size": 8192,
        "max_position_embeddings": 10485760,
        "model_type": "llama4_text",
        "num_experts_per_tok": 1,
        "num_hidden_layers": 48,
        "num_local_experts": 16,
        "rope_scaling": {"factor": 8.0, "rope_type": "llama3"},
        "torch_dtype": "bfloat16",
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0.dev0",
    "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 1408},
}
LLAMA_4_MAVERICK_FP8 = {
    **LLAMA_4_SCOUT,
    "quantization_config": {
        "activation_scale_ub": 1200.0,
        "modules_to_not_convert": ["vision_model", "multi_modal_projector", "lm_head"],
        "quant_method": "fbgemm_fp8",
    },
    "text_config": {
        **LLAMA_4_SCOUT["text_config"],  # type: ignore[dict-item]
        "max_position_embeddings": 1048576,
        "num_local_experts": 128,
    },
}
LLAMA_3_2_11B_VISION = {
    "architectures": ["MllamaForConditionalGeneration"],
    "image_token_index": 128256,
    "model_type": "mllama",
    "text_config": {
        "hidden_size": 4096,
        "max_position_embeddings": 131072,
        "model_type": "mllama_text_model",
        "num_hidden_layers": 40,
        "vocab_size": 128256,
    },
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0",
    "vision_config": {"model_type": "mllama_vision_model", "image_size": 560},
}
LLAVA_1_5_7B = {
    "architectures": ["LlavaForConditionalGeneration"],
    "ignore_index": -100,
    "image_token_index": 32000,
    "model_type": "llava",
    "pad_token_id": 32001,
    "projector_hidden_act": "gelu",
    "text_config": {
        "_name_or_path": "lmsys/vicuna-7b-v1.5",
        "architectures": ["LlamaForCausalLM"],
        "max_position_embeddings": 4096,
        "model_type": "llama",
        "rms_norm_eps": 1e-05,
        "torch_dtype": "float16",
        "vocab_size": 32064,
    },
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.36.0.dev0",
    "vision_config": {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14},
    "vision_feature_layer": -2,
    "vocab_size": 32064,
}
QWEN2_VL_7B = {
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "hidden_size": 3584,
    "max_position_embeddings": 32768,
    "model_type": "qwen2_vl",
    "rope_scaling": {"mrope_section": [16, 24, 24], "type": "mrope"},
    "torch_dtype": "bfloat16",
    "transformers_version": "4.41.2",
    "vision_config": {"depth": 32, "embed_dim": 1280, "in_chans": 3, "spatial_merge_size": 2},
    "vision_start_token_id": 151652,
}
QWEN2_5_VL_7B = {
    **QWEN2_VL_7B,
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "max_position_embeddings": 128000,
    "model_type": "qwen2_5_vl",
}
QWEN3_VL_30B_A3B = {
    "architectures": ["Qwen3VLMoeForConditionalGeneration"],
    "model_type": "qwen3_vl_moe",
    "text_config": {
        "hidden_size": 2048,
        "max_position_embeddings": 262144,
        "model_type": "qwen3_vl_moe_text",
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "dtype": "bfloat16",
    },
    "transformers_version": "4.57.0.dev0",
    "vision_config": {"depth": 27, "hidden_size": 1152, "model_type": "qwen3_vl_moe"},
}
QWEN3_VL_8B = {
    "architectures": ["Qwen3VLForConditionalGeneration"],
    "model_type": "qwen3_vl",
    "text_config": {"max_position_embeddings": 262144, "model_type": "qwen3_vl_text"},
    "dtype": "bfloat16",
    "transformers_version": "4.57.0.dev0",
    "vision_config": {"depth": 27, "model_type": "qwen3_vl"},
}
INTERNVL_2_5_8B = {
    "architectures": ["InternVLChatModel"],
    "llm_config": {
        "architectures": ["InternLM2ForCausalLM"],
        "max_position_embeddings": 32768,
        "model_type": "internlm2",
        "torch_dtype": "bfloat16",
    },
    "model_type": "internvl_chat",
    "torch_dtype": "bfloat16",
    "transformers_version": None,
    "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b"},
}
BERT_BASE = {
    "architectures": ["BertForMaskedLM"],
    "hidden_size": 768,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_hidden_layers": 12,
    "transformers_version": "4.6.0.dev0",
    "type_vocab_size": 2,
    "vocab_size": 30522,
}
BGE_LARGE_EN_V15 = {
    "architectures": ["BertModel"],
    "hidden_size": 1024,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_hidden_layers": 24,
    "torch_dtype": "float32",
    "transformers_version": "4.30.0",
    "vocab_size": 30522,
}
ALL_MINILM_L6_V2 = {
    "architectures": ["BertModel"],
    "hidden_size": 384,
    "intermediate_size": 1536,
    "max_position_embeddings": 512,
    "model_type": "bert",
    "num_hidden_layers": 6,
    "transformers_version": "4.8.2",
    "vocab_size": 30522,
}
MULTILINGUAL_E5_LARGE = {
    "architectures": ["XLMRobertaModel"],
    "hidden_size": 1024,
    "max_position_embeddings": 514,
    "model_type": "xlm-roberta",
    "torch_dtype": "float32",
    "transformers_version": "4.29.0.dev0",
    "vocab_size": 250002,
}
E5_MISTRAL_7B = {
    "architectures": ["MistralModel"],
    "hidden_size": 4096,
    "max_position_embeddings": 32768,
    "model_type": "mistral",
    "torch_dtype": "float16",
    "transformers_version": "4.34.0",
}
BGE_RERANKER_LARGE = {
    "architectures": ["XLMRobertaForSequenceClassification"],
    "id2label": {"0": "LABEL_0"},
    "max_position_embeddings": 514,
    "model_type": "xlm-roberta",
    "torch_dtype": "float32",
    "transformers_version": "4.30.0",
}
WHISPER_LARGE_V3 = {
    "architectures": ["WhisperForConditionalGeneration"],
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "model_type": "whisper",
    "torch_dtype": "float16",
    "transformers_version": "4.36.0.dev0",
}
UNKNOWN_VLM_MOE = {
    "architectures": ["FutureForConditionalGeneration"],
    "model_type": "future_vlm",
    "language_config": {
        "max_position_embeddings": 65536,
        "num_local_experts": 8,
        "num_experts_per_tok": 2,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.60.0",
    },
    "vision_config": {},
}

CHATGLM3_6B = {
    "architectures": ["ChatGLMModel"],
    "auto_map": {"AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"},
    "hidden_size": 4096,
    "model_type": "chatglm",
    "num_layers": 28,
    "padded_vocab_size": 65024,
    "seq_length": 8192,
    "torch_dtype": "float16",
    "transformers_version": "4.27.1",
}
QWEN_7B_V1 = {
    "architectures": ["QWenLMHeadModel"],
    "max_position_embeddings": 32768,
    "model_type": "qwen",
    "seq_length": 8192,
    "transformers_version": "4.32.0",
}
BAICHUAN2_7B = {
    "architectures": ["BaichuanForCausalLM"],
    "max_position_embeddings": 4096,
    "model_max_length": 4096,
    "model_type": "baichuan",
    "torch_dtype": "bfloat16",
    "transformers_version": "4.29.2",
}
DBRX_INSTRUCT = {
    "architectures": ["DbrxForCausalLM"],
    "d_model": 6144,
    "ffn_config": {"moe_num_experts": 16, "moe_top_k": 4, "ffn_hidden_size": 10752},
    "max_seq_len": 32768,
    "model_type": "dbrx",
    "n_layers": 40,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.38.2",
}
LLAVA_NEXT_MISTRAL = {
    "architectures": ["LlavaNextForConditionalGeneration"],
    "model_type": "llava_next",
    "text_config": {"architectures": ["MistralForCausalLM"], "model_type": "mistral"},
    "torch_dtype": "float16",
    "vision_config": {"model_type": "clip_vision_model"},
}

# name, config, sentence-transformers file present, architecture, context, capabilities,
# quantization label, MoE experts
CASES: list[tuple[str, dict[str, Any], bool, str, int, list[str], str | None, int]] = [
    ("llama-3.1-8b", LLAMA_3_1_8B, False, "LlamaForCausalLM", 131072, T2T, None, 0),
    ("llama-3.2-1b", LLAMA_3_2_1B, False, "LlamaForCausalLM", 131072, T2T, None, 0),
    ("llama-3.3-70b", LLAMA_3_3_70B, False, "LlamaForCausalLM", 131072, T2T, None, 0),
    ("mistral-7b-v0.3", MISTRAL_7B_INSTRUCT_V03, False, "MistralForCausalLM", 32768, T2T, None, 0),
    ("mixtral-8x7b", MIXTRAL_8X7B, False, "MixtralForCausalLM", 32768, T2T, None, 8),
    ("qwen2.5-7b", QWEN2_5_7B, False, "Qwen2ForCausalLM", 32768, T2T, None, 0),
    ("qwen2.5-7b-awq", QWEN2_5_7B_AWQ, False, "Qwen2ForCausalLM", 32768, T2T, "int4", 0),
    ("qwen2.5-72b-gptq", QWEN2_5_72B_GPTQ_INT4, False, "Qwen2ForCausalLM", 32768, T2T, "int4", 0),
    ("qwen3-8b", QWEN3_8B, False, "Qwen3ForCausalLM", 40960, T2T, None, 0),
    ("qwen3-8b-fp8", QWEN3_8B_FP8, False, "Qwen3ForCausalLM", 40960, T2T, "fp8", 0),
    ("qwen3-30b-a3b", QWEN3_30B_A3B, False, "Qwen3MoeForCausalLM", 40960, T2T, None, 128),
    ("qwen3-235b-2507", QWEN3_235B_2507, False, "Qwen3MoeForCausalLM", 262144, T2T, None, 128),
    ("qwen3-embedding-8b", QWEN3_EMBEDDING_8B, True, "Qwen3ForCausalLM", 32768, EMB, None, 0),
    ("deepseek-v3", DEEPSEEK_V3, False, "DeepseekV3ForCausalLM", 163840, T2T, "fp8", 256),
    ("kimi-k2", KIMI_K2, False, "DeepseekV3ForCausalLM", 131072, T2T, "fp8", 384),
    ("gemma-2-9b", GEMMA_2_9B, False, "Gemma2ForCausalLM", 8192, T2T, None, 0),
    ("gemma-3-4b", GEMMA_3_4B, False, "Gemma3ForConditionalGeneration", 131072, ITT, None, 0),
    ("gemma-3-27b", GEMMA_3_27B, False, "Gemma3ForConditionalGeneration", 131072, ITT, None, 0),
    ("gemma-3-1b", GEMMA_3_1B, False, "Gemma3ForCausalLM", 32768, T2T, None, 0),
    ("phi-2", PHI_2, False, "PhiForCausalLM", 2048, T2T, None, 0),
    ("phi-3-mini-4k", PHI_3_MINI_4K, False, "Phi3ForCausalLM", 4096, T2T, None, 0),
    ("phi-3-mini-128k", PHI_3_MINI_128K, False, "Phi3ForCausalLM", 131072, T2T, None, 0),
    ("phi-3.5-vision", PHI_3_5_VISION, False, "Phi3VForCausalLM", 131072, ITT, None, 0),
    ("phi-3.5-moe", PHI_3_5_MOE, False, "PhiMoEForCausalLM", 131072, T2T, None, 16),
    ("gpt-oss-120b", GPT_OSS_120B, False, "GptOssForCausalLM", 131072, T2T, "mxfp4", 128),
    ("gpt-oss-20b", GPT_OSS_20B, False, "GptOssForCausalLM", 131072, T2T, "mxfp4", 32),
    (
        "llama-4-scout",
        LLAMA_4_SCOUT,
        False,
        "Llama4ForConditionalGeneration",
        10485760,
        ITT,
        None,
        16,
    ),
    (
        "llama-4-maverick-fp8",
        LLAMA_4_MAVERICK_FP8,
        False,
        "Llama4ForConditionalGeneration",
        1048576,
        ITT,
        "fbgemm_fp8",
        128,
    ),
    (
        "llama-3.2-11b-vision",
        LLAMA_3_2_11B_VISION,
        False,
        "MllamaForConditionalGeneration",
        131072,
        ITT,
        None,
        0,
    ),
    ("llava-1.5-7b", LLAVA_1_5_7B, False, "LlavaForConditionalGeneration", 4096, ITT, None, 0),
    ("qwen2-vl-7b", QWEN2_VL_7B, False, "Qwen2VLForConditionalGeneration", 32768, ITT, None, 0),
    (
        "qwen2.5-vl-7b",
        QWEN2_5_VL_7B,
        False,
        "Qwen2_5_VLForConditionalGeneration",
        128000,
        ITT,
        None,
        0,
    ),
    (
        "qwen3-vl-30b-a3b",
        QWEN3_VL_30B_A3B,
        False,
        "Qwen3VLMoeForConditionalGeneration",
        262144,
        ITT,
        None,
        128,
    ),
    ("qwen3-vl-8b", QWEN3_VL_8B, False, "Qwen3VLForConditionalGeneration", 262144, ITT, None, 0),
    ("internvl-2.5-8b", INTERNVL_2_5_8B, False, "InternVLChatModel", 32768, ITT, None, 0),
    ("bert-base", BERT_BASE, False, "BertForMaskedLM", 512, EMB, None, 0),
    ("bge-large-en-v1.5", BGE_LARGE_EN_V15, True, "BertModel", 512, EMB, None, 0),
    ("all-minilm-l6-v2", ALL_MINILM_L6_V2, True, "BertModel", 512, EMB, None, 0),
    ("multilingual-e5-large", MULTILINGUAL_E5_LARGE, True, "XLMRobertaModel", 514, EMB, None, 0),
    ("e5-mistral-7b", E5_MISTRAL_7B, True, "MistralModel", 32768, EMB, None, 0),
    (
        "bge-reranker-large",
        BGE_RERANKER_LARGE,
        False,
        "XLMRobertaForSequenceClassification",
        514,
        ["RERANK"],
        None,
        0,
    ),
    (
        "whisper-large-v3",
        WHISPER_LARGE_V3,
        False,
        "WhisperForConditionalGeneration",
        448,
        ["AUDIO_TO_TEXT"],
        None,
        0,
    ),
    ("chatglm3-6b", CHATGLM3_6B, False, "ChatGLMModel", 8192, T2T, None, 0),
    ("qwen-7b-v1", QWEN_7B_V1, False, "QWenLMHeadModel", 8192, T2T, None, 0),
    ("baichuan2-7b", BAICHUAN2_7B, False, "BaichuanForCausalLM", 4096, T2T, None, 0),
    ("dbrx-instruct", DBRX_INSTRUCT, False, "DbrxForCausalLM", 32768, T2T, None, 16),
    (
        "llava-v1.6-mistral",
        LLAVA_NEXT_MISTRAL,
        False,
        "LlavaNextForConditionalGeneration",
        131072,
        ITT,
        None,
        0,
    ),
    (
        "unknown-vlm-moe",
        UNKNOWN_VLM_MOE,
        False,
        "FutureForConditionalGeneration",
        65536,
        ITT,
        None,
        8,
    ),
]


@pytest.mark.parametrize(
    ("raw", "sentence", "architecture", "context", "caps", "quant", "experts"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_real_configs_give_the_published_facts(
    raw: dict[str, Any],
    sentence: bool,
    architecture: str,
    context: int,
    caps: list[str],
    quant: str | None,
    experts: int,
) -> None:
    facts = config.model_facts(raw, sentence_transformers=sentence)
    assert facts.model_type == raw["model_type"]
    assert facts.architecture == architecture
    assert facts.context_length == context
    assert capabilities.for_model(facts) == caps
    assert (facts.quantization.label if facts.quantization else None) == quant
    assert facts.num_experts == experts
    assert facts.is_moe is (experts > 1)
    assert facts.has_vision is (caps == ITT)
    assert facts.is_embedding is (caps == EMB)


def test_a_mistral_chat_model_is_text_to_text_not_an_embedding_model() -> None:
    facts = config.model_facts(MISTRAL_7B_INSTRUCT_V03)
    assert not facts.is_embedding
    assert capabilities.for_model(facts) == ["TEXT_TO_TEXT"]


def test_a_headless_mistral_model_is_an_embedding_model_even_without_sentence_transformers() -> (
    None
):
    assert capabilities.for_model(config.model_facts(E5_MISTRAL_7B)) == ["EMBEDDING"]


def test_gemma_3_context_is_128k_not_sliding_window_times_rope_factor() -> None:
    facts = config.model_facts(GEMMA_3_4B)
    sliding, factor = 1024, 8.0
    assert facts.context_length == 131072 != int(sliding * factor)


def test_an_explicit_context_wins_over_the_family_default() -> None:
    raw = {**GEMMA_3_4B, "text_config": {**GEMMA_3_4B["text_config"], "max_position_embeddings": 8}}  # type: ignore[dict-item]
    assert config.model_facts(raw).context_length == 8


def test_dtype_and_versions_come_from_the_config_or_its_language_sub_config() -> None:
    assert config.model_facts(LLAMA_3_1_8B).torch_dtype == "bfloat16"
    assert config.model_facts(LLAMA_3_1_8B).transformers_version == "4.43.0.dev0"
    assert config.model_facts(QWEN3_VL_30B_A3B).torch_dtype == "bfloat16"  # "dtype" key
    unknown = config.model_facts(UNKNOWN_VLM_MOE)
    assert (unknown.torch_dtype, unknown.transformers_version) == ("bfloat16", "4.60.0")
    assert unknown.experts_per_token == 2


def test_moe_facts_include_the_experts_per_token() -> None:
    facts = config.model_facts(DEEPSEEK_V3)
    assert (facts.num_experts, facts.experts_per_token) == (256, 8)
    assert config.model_facts(LLAMA_3_1_8B).is_moe is False


@pytest.mark.parametrize(
    ("qc", "method", "bits", "label"),
    [
        ({"quant_method": "fp8", "fmt": "e4m3"}, "fp8", 8, "fp8"),
        ({"quant_method": "fbgemm_fp8"}, "fbgemm_fp8", 8, "fbgemm_fp8"),
        ({"quant_method": "awq", "bits": 4, "version": "gemm"}, "awq", 4, "int4"),
        ({"quant_method": "gptq", "bits": 8}, "gptq", 8, "int8"),
        ({"quant_method": "mxfp4"}, "mxfp4", 4, "mxfp4"),
        (
            {"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"},
            "bitsandbytes",
            4,
            "nf4",
        ),
        ({"quant_method": "bitsandbytes", "load_in_8bit": True}, "bitsandbytes", 8, "int8"),
        ({"load_in_4bit": True}, "bitsandbytes", 4, "fp4"),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "float-quantized",
                "config_groups": {"group_0": {"weights": {"num_bits": 8, "type": "float"}}},
            },
            "compressed-tensors",
            8,
            "fp8",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "pack-quantized",
                "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "int"}}},
            },
            "compressed-tensors",
            4,
            "int4",
        ),
        (
            {
                "quant_method": "compressed-tensors",
                "format": "nvfp4-pack-quantized",
                "config_groups": {"group_0": {"weights": {"num_bits": 4, "type": "float"}}},
            },
            "compressed-tensors",
            4,
            "nvfp4",
        ),
        ({"activation_scheme": "dynamic", "fmt": "e4m3"}, "fp8", 8, "fp8"),
    ],
)
def test_quantization_configs_are_named_by_method_bits_and_label(
    qc: dict[str, Any], method: str, bits: int, label: str
) -> None:
    quant = config.model_facts({"model_type": "llama", "quantization_config": qc}).quantization
    assert quant is not None
    assert (quant.method, quant.bits, quant.label) == (method, bits, label)


def test_a_config_without_quantization_has_none() -> None:
    assert config.model_facts(LLAMA_3_1_8B).quantization is None
    assert config.model_facts({"quantization_config": {}}).quantization is None


def test_infinity_and_nan_literals_are_tolerated() -> None:
    data = (
        b'{"model_type": "nemotron", "max_position_embeddings": 4096,'
        b' "x": Infinity, "y": -Infinity, "z": NaN}'
    )
    raw = config.load_json(data, source="config.json")
    assert config.model_facts(raw).context_length == 4096


def test_a_context_given_as_infinity_or_a_float_is_read_sensibly() -> None:
    inf = config.load_json(b'{"model_type": "x", "max_position_embeddings": Infinity}', source="c")
    assert config.model_facts(inf).context_length == 0
    assert (
        config.model_facts({"model_type": "x", "max_position_embeddings": 4096.0}).context_length
        == 4096
    )
    huge = config.model_facts({"model_type": "x", "max_position_embeddings": 2**40})
    assert huge.context_length == 2**31 - 1  # OME's maxTokens is an int32


def test_a_utf8_bom_is_accepted() -> None:
    assert config.load_json(b'\xef\xbb\xbf{"model_type": "llama"}', source="c") == {
        "model_type": "llama"
    }


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[1, 2, 3]",
        b'"a string"',
        b"\xff\xfe\x00garbage",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"n": ' + b"9" * 5000 + b"}",
    ],
    ids=["text", "array", "string", "bad-utf8", "deep-nesting", "huge-integer"],
)
def test_bad_json_raises_a_model_info_error_naming_the_file(data: bytes) -> None:
    with pytest.raises(errors.ModelInfoError, match=r"/models/x/config\.json"):
        config.load_json(data, source="/models/x/config.json")


SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    "_diffusers_version": "0.19.0.dev0",
    "force_zeros_for_empty_prompt": True,
    "add_watermarker": None,
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
FLUX_DEV_INDEX = {
    "_class_name": "FluxPipeline",
    "_diffusers_version": "0.30.0.dev0",
    "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "tokenizer_2": ["transformers", "T5TokenizerFast"],
    "transformer": ["diffusers", "FluxTransformer2DModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}
WAN_T2V_INDEX = {
    "_class_name": "WanPipeline",
    "_diffusers_version": "0.33.0.dev0",
    "transformer": ["diffusers", "WanTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLWan"],
}


@pytest.mark.parametrize(
    ("index", "caps"),
    [
        (SDXL_INDEX, ["TEXT_TO_IMAGE"]),
        (FLUX_DEV_INDEX, ["TEXT_TO_IMAGE"]),
        (
            {**SDXL_INDEX, "_class_name": "StableDiffusionXLImg2ImgPipeline"},
            ["IMAGE_TEXT_TO_IMAGE"],
        ),
        ({**FLUX_DEV_INDEX, "_class_name": "FluxKontextPipeline"}, ["IMAGE_TEXT_TO_IMAGE"]),
        (WAN_T2V_INDEX, ["TEXT_TO_VIDEO"]),
        ({**WAN_T2V_INDEX, "_class_name": "WanImageToVideoPipeline"}, ["IMAGE_TEXT_TO_VIDEO"]),
    ],
    ids=["sdxl", "flux", "sdxl-img2img", "flux-kontext", "wan-t2v", "wan-i2v"],
)
def test_diffusers_pipelines_get_capabilities_from_class_and_components(
    index: dict[str, Any], caps: list[str]
) -> None:
    facts = config.diffusers_facts(index, source="model_index.json")
    types = [cls for _, cls in facts.components.values()]
    assert capabilities.for_diffusers(facts.class_name, types) == caps


def test_diffusers_facts_list_the_components_and_version() -> None:
    facts = config.diffusers_facts(SDXL_INDEX, source="model_index.json")
    assert facts.class_name == "StableDiffusionXLPipeline"
    assert facts.diffusers_version == "0.19.0.dev0"
    assert facts.components["unet"] == ("diffusers", "UNet2DConditionModel")
    assert "add_watermarker" not in facts.components


def test_a_model_index_without_a_pipeline_is_rejected() -> None:
    with pytest.raises(errors.ModelInfoError, match=r"model_index\.json"):
        config.diffusers_facts({"foo": 1}, source="model_index.json")


def test_every_ome_family_has_a_table_row() -> None:
    ome = {
        "llama", "llama4", "mistral", "mixtral", "qwen", "qwen2", "qwen2_vl", "qwen2_5_vl",
        "qwen3", "qwen3_moe", "qwen3_vl", "deepseek_v3", "gemma", "gemma2", "gemma3",
        "gemma3_text", "phi", "phi3", "phi3_v", "phi3small", "phimoe", "gpt_oss", "kimi_k2",
        "bert", "mllama", "llava", "chatglm", "cohere", "dbrx", "baichuan", "internlm",
        "internlm2", "exaone", "minicpm", "minicpm3", "stablelm", "deepseek_vl_v2", "janus",
        "multi_modality",
    }  # fmt: skip
    assert ome <= set(families.FAMILIES)

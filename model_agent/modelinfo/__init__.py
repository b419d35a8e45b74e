"""Model analysis, pure: what a model is, from the bytes of its config files and safetensors
headers.

Modules: ``safetensors`` (header and index parsing, dtype-aware parameter counting),
``config`` (config.json facts), ``families`` (the per-``model_type`` table), ``quantization``,
``tensorrt`` (TensorRT-LLM configs read as Transformers ones), ``capabilities`` (OME's
capability vocabulary), ``formatting`` (OME's parameter-size strings), ``report`` (the ConfigMap
``config`` object). Nothing here touches the disk or the network: ``model_agent.inspection``
reads the files (headers only, with size caps) and hands the bytes in.
"""

"""Log formats and secret masking (model_agent.logs).

Covers: every JSON line parses and carries ts, level, logger, msg, the node and every extra
(model key, file, bytes, duration) with numbers kept as numbers; error_class is present for a
logged exception (exc_info) and for an ``error`` extra, in JSON and in text; a planted Hugging
Face token, a Bearer token, an OCI request Signature, a ``token=`` query parameter and a
secret-named extra never appear in either format, whether in the message, an argument, an
extra, or a traceback; --log-level filters; Kopf's internal extras (settings) are left out
and its object reference becomes ``object``; the progress Throttle lets one line per key per
interval through.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from model_agent import logs

HF_TOKEN = "hf_PlantedTokenAbCdEf0123456789xyz"
BEARER = "eyJhbGciOiJSUzI1NiJ9.planted-bearer-payload.c2lnbmF0dXJl"
OCI_SIGNATURE = "PlantedOciSignatureQmFzZTY0U2lnbmF0dXJl+/=="
SECRETS = (HF_TOKEN, BEARER, OCI_SIGNATURE, "planted-query-token-42", "planted-extra-secret")


@pytest.fixture
def capture() -> Iterator[Any]:
    """configure() into a buffer; the root logger is restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()

    def setup(fmt: str, level: str = "debug", node: str | None = "node-7") -> io.StringIO:
        logs.configure(level=level, fmt=fmt, stream=buffer, node=node)
        return buffer

    try:
        yield setup
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def log_every_secret(log: logging.Logger) -> None:
    oci_header = (
        'Signature version="1",keyId="ocid1.tenancy.oc1..aaa/ocid1.user.oc1..bbb/11:22",'
        f'algorithm="rsa-sha256",headers="date (request-target) host",signature="{OCI_SIGNATURE}"'
    )
    log.info("using token %s for hub", HF_TOKEN)
    log.info("request headers %s", {"Authorization": f"Bearer {BEARER}"})
    log.info("oci request", extra={"authorization": oci_header, "model": "team-a/llama"})
    log.info("signed with %s", oci_header)
    log.info("fetching https://hub.local/x?token=planted-query-token-42&rev=main")
    log.info("bare Bearer %s in text", BEARER)
    log.info("hub login", extra={"hf_token": "planted-extra-secret", "file": "config.json"})
    try:
        raise PermissionError(f"401 for Authorization: Bearer {BEARER} and {HF_TOKEN}")
    except PermissionError:
        log.exception("download failed")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_planted_tokens_and_signatures_never_appear(capture: Any, fmt: str) -> None:
    buffer = capture(fmt)
    log_every_secret(logs.logger.getChild("test"))
    output = buffer.getvalue()
    assert output.count("\n") >= 8
    for secret in SECRETS:
        assert secret not in output, (fmt, secret)
    assert "***" in output
    assert "team-a/llama" in output and "config.json" in output  # non-secrets survive


def test_json_lines_parse_and_carry_extras_node_and_numbers(capture: Any) -> None:
    buffer = capture("json")
    logs.logger.getChild("pipeline").info(
        "downloading file",
        extra={
            "model": "team-a.basemodel.llama",
            "file": "model.safetensors",
            "bytes": 1024,
            "duration": 1.5,
        },
    )
    [line] = buffer.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["msg"] == "downloading file"
    assert entry["level"] == "info" and entry["logger"] == "model_agent.pipeline"
    assert entry["node"] == "node-7"
    assert entry["model"] == "team-a.basemodel.llama" and entry["file"] == "model.safetensors"
    assert entry["bytes"] == 1024 and entry["duration"] == 1.5
    assert entry["ts"].endswith("Z")


def test_json_error_class_from_exc_info_and_from_an_error_extra(capture: Any) -> None:
    buffer = capture("json")
    log = logs.logger.getChild("agent")
    try:
        raise TimeoutError("stalled")
    except TimeoutError:
        log.exception("Failed to pull")
    log.error("Failed to pull", extra={"error": ConnectionResetError("peer reset")})
    first, second = (json.loads(line) for line in buffer.getvalue().splitlines())
    assert first["error_class"] == "TimeoutError" and "stalled" in first["exc"]
    assert second["error_class"] == "ConnectionResetError" and second["error"] == "peer reset"


def test_text_lines_carry_extras_and_error_class(capture: Any) -> None:
    buffer = capture("text")
    try:
        raise OSError("disk full")
    except OSError:
        logs.logger.error("verification failed", exc_info=True, extra={"file": "a.bin"})
    text = buffer.getvalue()
    assert "ERROR" in text and "verification failed" in text
    assert "file=a.bin" in text and "error_class=OSError" in text and "node=" not in text


def test_every_json_line_parses_even_with_odd_extras(capture: Any) -> None:
    buffer = capture("json")
    log = logs.logger.getChild("odd")
    log.info("a dict", extra={"payload": {"nested": [1, 2]}, "path": object()})
    log.warning('quote " and newline \n inside')
    for line in buffer.getvalue().splitlines():
        assert isinstance(json.loads(line), dict)


def test_log_level_filters(capture: Any) -> None:
    buffer = capture("json", level="warning")
    logs.logger.info("hidden")
    logs.logger.warning("shown")
    assert [json.loads(line)["msg"] for line in buffer.getvalue().splitlines()] == ["shown"]


def test_kopf_internal_extras_are_dropped_and_its_object_reference_kept(capture: Any) -> None:
    buffer = capture("json")
    logging.getLogger("model_agent.kopf_like").info(  # kopf.objects has Kopf's own poster
        "Handler succeeded",
        extra={
            "settings": object(),
            "k8s_skip": False,
            "k8s_ref": {"namespace": "team-a", "name": "llama"},
        },
    )
    entry = json.loads(buffer.getvalue())
    assert "settings" not in entry and "k8s_skip" not in entry
    assert entry["object"] == "team-a/llama"


def test_throttle_lets_one_line_per_key_per_interval() -> None:
    now = [0.0]
    throttle = logs.Throttle(30.0, clock=lambda: now[0])
    assert throttle.ready("llama") is True
    assert throttle.ready("llama") is False
    assert throttle.ready("mistral") is True
    now[0] = 29.9
    assert throttle.ready("llama") is False
    now[0] = 30.0
    assert throttle.ready("llama") is True
    throttle.forget("llama")
    assert throttle.ready("llama") is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdefghijkl", "Authorization: Bearer ***"),
        ("GET /x?token=abc123&rev=main", "GET /x?token=***&rev=main"),
        ("downloading file model.safetensors", "downloading file model.safetensors"),
        ("hf_hub_download and HF_TOKEN unset", "hf_hub_download and HF_TOKEN unset"),
    ],
)
def test_redact_masks_secrets_and_leaves_ordinary_text(text: str, expected: str) -> None:
    assert logs.redact(text) == expected

"""Test-wide setup: no cluster or cloud credentials or proxies leak in from the environment,
and every ``tests/harness/fixtures_*.py`` module is a plugin whose fixtures every test can
use."""

from __future__ import annotations

import logging
import os
import pathlib

_HARNESS = pathlib.Path(__file__).parent / "harness"
pytest_plugins = sorted(f"tests.harness.{p.stem}" for p in _HARNESS.glob("fixtures_*.py"))

for _variable in (
    "KUBERNETES_SERVICE_HOST",
    "KUBERNETES_SERVICE_PORT",
    "KUBECONFIG",
    "HF_TOKEN",
    "HUGGINGFACE_TOKEN",
    "HF_ENDPOINT",
    "OCI_CONFIG_FILE",
    # a proxy of the machine running the tests must not reroute their loopback traffic
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "NO_PROXY",
    "no_proxy",
    "MODEL_AGENT_DATA_PROXY",
    "MODEL_AGENT_DATA_NO_PROXY",
    "MODEL_AGENT_CA_BUNDLE",
):
    os.environ.pop(_variable, None)
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

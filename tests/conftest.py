"""Test-wide setup: no cluster or cloud credentials or proxies leak in from the environment
(nor the AWS chain's files, nor any instance metadata service), and every
``tests/harness/fixtures_*.py`` module is a plugin whose fixtures every test can use."""

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
for _variable in [v for v in os.environ if v.startswith("AWS_")]:
    os.environ.pop(_variable, None)
# Nothing in the tests may reach the instance metadata address or read the developer's files.
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
for _variable in ("GOOGLE_APPLICATION_CREDENTIALS", "STORAGE_EMULATOR_HOST"):
    os.environ.pop(_variable, None)
os.environ["NO_GCE_CHECK"] = "True"  # google-auth: never probe the metadata server
os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"  # and if it tried, a closed local port
os.environ["CLOUDSDK_CONFIG"] = os.devnull
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

"""Settings: every CONTRACT flag with its default; flag beats env beats default; clear errors."""

from __future__ import annotations

import pytest

from model_agent import errors, settings

CONTRACT_DEFAULTS = {
    "download_retry": 3,
    "concurrency": 4,
    "multipart_concurrency": 4,
    "num_download_worker": 5,
    "models_root_dir": "/mnt/models",
    "temp_dir": None,
    "cleanup_temp": True,
    "namespace": "ome",
    "node_label_retry": 5,
    "log_level": "info",
    "log_format": "text",
    "port": 8080,
    "metrics_port": 8080,
    "config_map_sync_interval": 30.0,
    "model_watch_resync_period": 600.0,
    "max_concurrent_reconciles": 10,
    "liveness_endpoint": "http://0.0.0.0:8081/healthz",
}


def test_defaults_match_the_contract() -> None:
    config = settings.resolve({}, {})
    for field, value in CONTRACT_DEFAULTS.items():
        assert getattr(config, field) == value, field
    assert config.node_name is None


def test_flag_beats_env_beats_default() -> None:
    env = {"POD_NAMESPACE": "from-env", "NODE_NAME": "node-env", "MODEL_AGENT_CONCURRENCY": "7"}
    assert settings.resolve({}, env).namespace == "from-env"
    assert settings.resolve({}, env).concurrency == 7
    config = settings.resolve({"namespace": "from-flag", "concurrency": "2"}, env)
    assert config.namespace == "from-flag"
    assert config.concurrency == 2
    assert config.node_name == "node-env"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("10m", 600.0), ("1h30m", 5400.0), ("500ms", 0.5), ("45", 45.0), ("2.5s", 2.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert settings.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "s10", "10m5", "-5s", "1h 30m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        settings.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"), [("200Mi", 200 * 2**20), ("1GiB", 2**30), ("4M", 4_000_000), ("123", 123)]
)
def test_sizes(text: str, size: int) -> None:
    assert settings.parse_size(text) == size


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        ({"concurrency": "zero"}, {}, "--concurrency"),
        ({"concurrency": "0"}, {}, "--concurrency"),
        ({"config_map_sync_interval": "soon"}, {}, "--config-map-sync-interval"),
        ({"port": "70000"}, {}, "--port"),
        ({"log_format": "xml"}, {}, "--log-format"),
        ({"cleanup_temp": "maybe"}, {}, "--cleanup-temp"),
        ({}, {"MODEL_AGENT_DOWNLOAD_RETRY": "-1"}, "$MODEL_AGENT_DOWNLOAD_RETRY"),
        ({}, {"INSTANCE_TYPE_MAP": "{not json"}, "INSTANCE_TYPE_MAP"),
        ({}, {"INSTANCE_TYPE_MAP": "[1, 2]"}, "INSTANCE_TYPE_MAP"),
    ],
)
def test_invalid_value_names_the_flag(
    flags: dict[str, str], env: dict[str, str], named: str
) -> None:
    with pytest.raises(errors.ConfigError) as info:
        settings.resolve(flags, env)
    assert named in str(info.value)


def test_environment_only_values() -> None:
    config = settings.resolve(
        {},
        {
            "HUGGINGFACE_TOKEN": "hf_secretsecret",
            "HF_ENDPOINT": "http://127.0.0.1:9/",
            "OCI_CONFIG_FILE": "/etc/oci/config",
            "INSTANCE_TYPE_MAP": '{"BM.GPU.H100.8": "H100"}',
        },
    )
    assert config.hf_token == "hf_secretsecret"
    assert "hf_secretsecret" not in repr(config)
    assert config.hf_endpoint == "http://127.0.0.1:9"
    assert config.oci_config_file == "/etc/oci/config"
    assert config.instance_type_map == {"BM.GPU.H100.8": "H100"}
    assert settings.resolve({}, {"HF_TOKEN": "a", "HUGGINGFACE_TOKEN": "b"}).hf_token == "a"


def test_missing_node_name_is_a_config_error() -> None:
    with pytest.raises(errors.ConfigError, match="NODE_NAME"):
        settings.resolve({}, {}).require_node_name()
    assert settings.resolve({"node_name": "n1"}, {}).require_node_name() == "n1"


# --- peering -----------------------------------------------------------------------------

PEER_ENV = {"POD_IP": "10.1.2.3", "MODEL_AGENT_PEER_TOKEN_FILE": "/etc/model-agent/peer/token"}


def test_peering_is_off_by_default_and_the_pod_ip_is_its_address() -> None:
    assert settings.resolve({}, {}).peer_port == 0
    config = settings.resolve({"peer_port": "8090"}, PEER_ENV)
    assert (config.peer_port, config.peer_address) == (8090, "10.1.2.3")
    flagged = settings.resolve({"peer_port": "8090", "peer_address": "10.9.9.9"}, PEER_ENV)
    assert flagged.peer_address == "10.9.9.9"


@pytest.mark.parametrize(
    ("flags", "environ", "named"),
    [
        ({"peer_port": "8090"}, {"MODEL_AGENT_PEER_TOKEN_FILE": "/t"}, "--peer-address"),
        ({"peer_port": "8090"}, {"POD_IP": "10.1.2.3"}, "--peer-token-file"),
        ({"peer_port": "8090", "peer_address": "0.0.0.0"}, PEER_ENV, "--peer-address 0.0.0.0"),
        ({"peer_port": "8090", "peer_address": "::"}, PEER_ENV, "--peer-address ::"),
        ({"peer_port": "8090", "peer_tls_cert": "/c"}, PEER_ENV, "--peer-tls-key, --peer-tls-ca"),
        ({"peer_port": "70000"}, PEER_ENV, "--peer-port"),
    ],
)
def test_half_configured_peering_stops_at_start_naming_what_is_missing(
    flags: dict[str, str], environ: dict[str, str], named: str
) -> None:
    with pytest.raises(errors.ConfigError, match=named.replace(".", r"\.")):
        settings.resolve(flags, environ)  # type: ignore[arg-type]


def test_peer_flags_without_a_peer_port_change_nothing() -> None:
    config = settings.resolve({"peer_tls_cert": "/c"}, {"POD_IP": "10.1.2.3"})
    assert config.peer_port == 0

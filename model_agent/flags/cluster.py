"""The flags of the agent in its cluster (reporting, watches, ports, trust, write-back), and
logging."""

from __future__ import annotations

from model_agent.flags import values
from model_agent.trust import egress as credential_rules

FLAGS: tuple[values.Flag, ...] = (
    values.Flag(
        "node_label_retry",
        "--node-label-retry",
        "5",
        values.non_negative_int,
        "Retries of a failed node-label patch.",
        ("MODEL_AGENT_NODE_LABEL_RETRY",),
    ),
    values.Flag(
        "max_concurrent_reconciles",
        "--max-concurrent-reconciles",
        "10",
        values.positive_int,
        "Model removals (deletes, unselections) run at once; more wait.",
        ("MODEL_AGENT_MAX_CONCURRENT_RECONCILES",),
    ),
    values.Flag(
        "config_map_sync_interval",
        "--config-map-sync-interval",
        "30s",
        values.parse_duration,
        "At most one progress write per model per interval.",
        ("MODEL_AGENT_CONFIG_MAP_SYNC_INTERVAL",),
    ),
    values.Flag(
        "model_watch_resync_period",
        "--model-watch-resync-period",
        "10m",
        values.parse_duration,
        "Resync period: watches are reopened (resuming where they were, no relist) and "
        "the models are re-listed once, from the API server's watch cache, to catch a "
        "missed delete; each agent's period is 0.8 to 1.2 times this, at random.",
        ("MODEL_AGENT_MODEL_WATCH_RESYNC_PERIOD",),
    ),
    values.Flag(
        "relist_window",
        "--relist-window",
        "30s",
        values.parse_duration,
        "After a lost watch, the reconnect or relist waits a random time within this "
        "window, so the agents of a large cluster do not all arrive in the same second.",
        ("MODEL_AGENT_RELIST_WINDOW",),
    ),
    values.Flag(
        "port",
        "--port",
        "8080",
        values.port,
        "Port of /healthz, /readyz, /livez and /metrics.",
        ("MODEL_AGENT_PORT",),
    ),
    values.Flag(
        "metrics_port",
        "--metrics-port",
        "8080",
        values.port,
        "Port of /metrics (served on --port too).",
        ("MODEL_AGENT_METRICS_PORT",),
    ),
    values.Flag(
        "liveness_endpoint",
        "--liveness-endpoint",
        "http://0.0.0.0:8081/healthz",
        values.text,
        "Kopf's liveness endpoint (the kubelet's livenessProbe target).",
        ("MODEL_AGENT_LIVENESS_ENDPOINT",),
    ),
    values.Flag(
        "credential_hosts",
        "--credential-hosts",
        "",
        credential_rules.parse_hosts,
        "Hosts (host, host:port or *.domain; comma-separated) a model's "
        "spec.storage.parameters.endpoint may name besides the configured endpoints "
        "(HF_ENDPOINT, OCI_OBJECT_STORAGE_ENDPOINT, AWS_ENDPOINT_URL_S3, STORAGE_EMULATOR_HOST, "
        "GITHUB_API_URL, the Azure BlobEndpoint) and the OCI region services; credentials go "
        "nowhere else.",
        ("MODEL_AGENT_CREDENTIAL_HOSTS",),
    ),
    values.Flag(
        "write_spec",
        "--write-spec",
        "true",
        values.parse_bool,
        "Fill empty spec fields of the model CR from the analysis, as OME's agent does "
        "(never a set field; false turns it off).",
        ("MODEL_AGENT_WRITE_SPEC",),
    ),
)

LOGGING: tuple[values.Flag, ...] = (
    values.Flag(
        "log_level",
        "--log-level",
        "info",
        values.choice("debug", "info", "warning", "error"),
        "Log level.",
        ("MODEL_AGENT_LOG_LEVEL",),
        ("run", "pull", "inspect", "gpu-shape", "status"),
    ),
    values.Flag(
        "log_format",
        "--log-format",
        "text",
        values.choice("text", "json"),
        "Log format.",
        ("MODEL_AGENT_LOG_FORMAT",),
        ("run", "pull", "inspect", "gpu-shape", "status"),
    ),
)

"""Every flag and environment variable of the agent, parsed into one frozen ``Settings``.

Precedence: a command-line flag beats its environment variable, which beats the default.
Pure: no I/O; the CLI hands in ``argv`` values and ``os.environ``. Invalid values raise
``errors.ConfigError`` naming the flag.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from model_agent import errors
from model_agent.egress import policy
from model_agent.trust import egress as credential_rules

__all__ = [
    "FLAGS",
    "Flag",
    "FreeSpace",
    "Settings",
    "parse_bool",
    "parse_duration",
    "parse_free_space",
    "parse_optional_duration",
    "parse_size",
    "resolve",
]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_SIZE_RE = re.compile(r"(\d+)\s*([kmgt]i?|b)?b?", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds from ``30s``, ``10m``, ``1h30m``, ``500ms`` or a bare number of seconds."""
    value = text.strip()
    if not value:
        raise ValueError("empty duration")
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _DURATION_RE.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
            pos = match.end()
        if pos != len(value) or pos == 0:
            raise ValueError(f"{text!r} is not a duration (examples: 30s, 10m, 1h30m)") from None
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


def parse_size(text: str) -> int:
    """Bytes from ``200Mi``, ``1GiB``, ``4M`` or a bare number of bytes."""
    match = _SIZE_RE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 4194304, 4Mi, 200MiB, 1G)")
    unit = (match.group(2) or "").lower()
    return int(match.group(1)) * _SIZE_UNITS[unit]


@dataclasses.dataclass(frozen=True)
class FreeSpace:
    """Free space kept on a filesystem: ``nbytes``, or ``percent`` of its capacity."""

    nbytes: int = 0
    percent: float = 0.0

    def of(self, capacity: int) -> int:
        """The reserve in bytes on a filesystem of ``capacity`` bytes."""
        return max(self.nbytes, int(capacity * self.percent / 100))


def parse_free_space(text: str) -> FreeSpace:
    """A size (``10Gi``, ``0``) or a percent of the filesystem (``5%``)."""
    value = text.strip()
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            raise ValueError(f"{text!r} is not a percent (example: 5%)") from None
        if not 0 <= percent < 100:
            raise ValueError(f"{text!r} must be at least 0% and below 100%")
        return FreeSpace(percent=percent)
    return FreeSpace(nbytes=parse_size(value))


_OFF = frozenset({"off", "false", "no", "never", "none", "disabled"})


def parse_optional_duration(text: str) -> float | None:
    """``off`` (None: the policy is disabled) or a duration."""
    if text.strip().lower() in _OFF:
        return None
    return parse_duration(text)


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (true or false)")


def _positive_int(text: str) -> int:
    number = int(text)
    if number < 1:
        raise ValueError(f"{text!r} must be at least 1")
    return number


def _non_negative_int(text: str) -> int:
    number = int(text)
    if number < 0:
        raise ValueError(f"{text!r} must not be negative")
    return number


def _port(text: str) -> int:
    number = int(text)
    if not 0 <= number <= 65535:
        raise ValueError(f"{text!r} is not a TCP port (0-65535)")
    return number


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return value

    return parse


def _text(text: str) -> str:
    return text


@dataclasses.dataclass(frozen=True)
class Flag:
    """One setting: its flag, its environment variables, its default and its parser."""

    field: str
    flag: str
    default: str | None
    parse: Callable[[str], Any]
    help: str
    env: tuple[str, ...] = ()
    commands: tuple[str, ...] = ("run",)


_TUNING = ("run", "pull")

#: The documented flags, in the order ``--help`` shows them. ``default`` is the text a user
#: would type; ``None`` means "unset".
FLAGS: tuple[Flag, ...] = (
    Flag(
        "node_name",
        "--node-name",
        None,
        _text,
        "Name of the node this agent runs on.",
        ("NODE_NAME",),
    ),
    Flag(
        "namespace",
        "--namespace",
        "ome",
        _text,
        "Namespace of the per-node ConfigMap (and of secrets for ClusterBaseModels).",
        ("POD_NAMESPACE",),
    ),
    Flag(
        "models_root_dir",
        "--models-root-dir",
        "/mnt/models",
        _text,
        "Directory under which models without spec.storage.path are stored.",
        ("MODELS_ROOT_DIR",),
    ),
    Flag(
        "temp_dir",
        "--temp-dir",
        None,
        _text,
        "Directory for partial downloads (default: beside each destination, same filesystem).",
        ("MODEL_AGENT_TEMP_DIR",),
        _TUNING,
    ),
    Flag(
        "cleanup_temp",
        "--cleanup-temp",
        "true",
        parse_bool,
        "Remove leftovers of failed pulls from the temp directory.",
        ("MODEL_AGENT_CLEANUP_TEMP",),
        _TUNING,
    ),
    Flag(
        "download_retry",
        "--download-retry",
        "3",
        _non_negative_int,
        "Retries of a failed file (network, 5xx, checksum) before the model fails.",
        ("MODEL_AGENT_DOWNLOAD_RETRY",),
        _TUNING,
    ),
    Flag(
        "concurrency",
        "--concurrency",
        "4",
        _positive_int,
        "Files downloaded in parallel per model.",
        ("MODEL_AGENT_CONCURRENCY",),
        _TUNING,
    ),
    Flag(
        "multipart_concurrency",
        "--multipart-concurrency",
        "4",
        _positive_int,
        "Ranged parts fetched in parallel per large file.",
        ("MODEL_AGENT_MULTIPART_CONCURRENCY",),
        _TUNING,
    ),
    Flag(
        "download_threads",
        "--download-threads",
        "0",
        _non_negative_int,
        "Threads that receive, decrypt, write and hash downloaded bytes (0: one per usable CPU, "
        "as `taskset` or the container cpuset allows).",
        ("MODEL_AGENT_DOWNLOAD_THREADS",),
        _TUNING,
    ),
    Flag(
        "multipart_threshold",
        "--multipart-threshold",
        "200Mi",
        parse_size,
        "Files at or above this size are split into ranged parts.",
        ("MODEL_AGENT_MULTIPART_THRESHOLD",),
        _TUNING,
    ),
    Flag(
        "stall_timeout",
        "--stall-timeout",
        "60s",
        parse_duration,
        "A transfer with no bytes for this long is retried.",
        ("MODEL_AGENT_STALL_TIMEOUT",),
        _TUNING,
    ),
    Flag(
        "data_proxy",
        "--data-proxy",
        None,
        _text,
        "Proxy for model bytes only (URL, or 'direct'); default: HTTPS_PROXY/HTTP_PROXY.",
        ("MODEL_AGENT_DATA_PROXY",),
        _TUNING,
    ),
    Flag(
        "data_no_proxy",
        "--data-no-proxy",
        None,
        _text,
        "NO_PROXY list for model bytes only; default: NO_PROXY.",
        ("MODEL_AGENT_DATA_NO_PROXY",),
        _TUNING,
    ),
    Flag(
        "ca_bundle",
        "--ca-bundle",
        None,
        _text,
        "PEM CA bundle every TLS connection trusts; default: SSL_CERT_FILE, REQUESTS_CA_BUNDLE.",
        ("MODEL_AGENT_CA_BUNDLE",),
        _TUNING,
    ),
    Flag(
        "num_download_worker",
        "--num-download-worker",
        "5",
        _positive_int,
        "Models downloaded in parallel.",
        ("MODEL_AGENT_NUM_DOWNLOAD_WORKER",),
    ),
    Flag(
        "min_free_space",
        "--min-free-space",
        "0",
        parse_free_space,
        "Free space a download may not use on each models filesystem: a size or a percent.",
        ("MODEL_AGENT_MIN_FREE_SPACE",),
    ),
    Flag(
        "partial_ttl",
        "--partial-ttl",
        "24h",
        parse_optional_duration,
        "Partial downloads of models gone or unselected are removed this long after their last "
        "write (off: kept).",
        ("MODEL_AGENT_PARTIAL_TTL",),
    ),
    Flag(
        "orphan_grace",
        "--orphan-grace",
        "off",
        parse_optional_duration,
        "Directories under the models root that no model owns are removed this long after "
        "first seen (off: only reported).",
        ("MODEL_AGENT_ORPHAN_GRACE",),
    ),
    Flag(
        "disk_scan_interval",
        "--disk-scan-interval",
        "5m",
        parse_optional_duration,
        "How often disk usage is measured and the cleanup policies run (off: never).",
        ("MODEL_AGENT_DISK_SCAN_INTERVAL",),
    ),
    Flag(
        "node_label_retry",
        "--node-label-retry",
        "5",
        _non_negative_int,
        "Retries of a failed node-label patch.",
        ("MODEL_AGENT_NODE_LABEL_RETRY",),
    ),
    Flag(
        "max_concurrent_reconciles",
        "--max-concurrent-reconciles",
        "10",
        _positive_int,
        "Model removals (deletes, unselections) run at once; more wait.",
        ("MODEL_AGENT_MAX_CONCURRENT_RECONCILES",),
    ),
    Flag(
        "config_map_sync_interval",
        "--config-map-sync-interval",
        "30s",
        parse_duration,
        "At most one progress write per model per interval.",
        ("MODEL_AGENT_CONFIG_MAP_SYNC_INTERVAL",),
    ),
    Flag(
        "model_watch_resync_period",
        "--model-watch-resync-period",
        "10m",
        parse_duration,
        "Resync period: watches are reopened (resuming where they were, no relist) and "
        "the models are re-listed once, from the API server's watch cache, to catch a "
        "missed delete; each agent's period is 0.8 to 1.2 times this, at random.",
        ("MODEL_AGENT_MODEL_WATCH_RESYNC_PERIOD",),
    ),
    Flag(
        "relist_window",
        "--relist-window",
        "30s",
        parse_duration,
        "After a lost watch, the reconnect or relist waits a random time within this "
        "window, so the agents of a large cluster do not all arrive in the same second.",
        ("MODEL_AGENT_RELIST_WINDOW",),
    ),
    Flag(
        "port",
        "--port",
        "8080",
        _port,
        "Port of /healthz, /readyz, /livez and /metrics.",
        ("MODEL_AGENT_PORT",),
    ),
    Flag(
        "metrics_port",
        "--metrics-port",
        "8080",
        _port,
        "Port of /metrics (served on --port too).",
        ("MODEL_AGENT_METRICS_PORT",),
    ),
    Flag(
        "liveness_endpoint",
        "--liveness-endpoint",
        "http://0.0.0.0:8081/healthz",
        _text,
        "Kopf's liveness endpoint (the kubelet's livenessProbe target).",
        ("MODEL_AGENT_LIVENESS_ENDPOINT",),
    ),
    Flag(
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
    Flag(
        "write_spec",
        "--write-spec",
        "true",
        parse_bool,
        "Fill empty spec fields of the model CR from the analysis, as OME's agent does "
        "(never a set field; false turns it off).",
        ("MODEL_AGENT_WRITE_SPEC",),
    ),
    Flag(
        "peer_port",
        "--peer-port",
        "0",
        _port,
        "Port of the peer server, which serves this node's model files to the other agents "
        "and lets this agent fetch from them (0: peering off).",
        ("MODEL_AGENT_PEER_PORT",),
    ),
    Flag(
        "peer_address",
        "--peer-address",
        None,
        _text,
        "Address the peer server binds and advertises to the other agents (the pod IP).",
        ("MODEL_AGENT_PEER_ADDRESS", "POD_IP"),
    ),
    Flag(
        "peer_token_file",
        "--peer-token-file",
        None,
        _text,
        "File holding the cluster's peer token; every peer request must carry it "
        "(required with --peer-port).",
        ("MODEL_AGENT_PEER_TOKEN_FILE",),
    ),
    Flag(
        "peer_tls_cert",
        "--peer-tls-cert",
        None,
        _text,
        "Certificate (PEM) the peer server serves HTTPS with (with --peer-tls-key and "
        "--peer-tls-ca).",
        ("MODEL_AGENT_PEER_TLS_CERT",),
    ),
    Flag(
        "peer_tls_key",
        "--peer-tls-key",
        None,
        _text,
        "Private key (PEM) of --peer-tls-cert.",
        ("MODEL_AGENT_PEER_TLS_KEY",),
    ),
    Flag(
        "peer_tls_ca",
        "--peer-tls-ca",
        None,
        _text,
        "CA bundle (PEM) that signed the peers' certificates; this agent fetches from peers "
        "over HTTPS and checks their certificate against it.",
        ("MODEL_AGENT_PEER_TLS_CA",),
    ),
    Flag(
        "log_level",
        "--log-level",
        "info",
        _choice("debug", "info", "warning", "error"),
        "Log level.",
        ("MODEL_AGENT_LOG_LEVEL",),
        ("run", "pull", "inspect", "gpu-shape", "status"),
    ),
    Flag(
        "log_format",
        "--log-format",
        "text",
        _choice("text", "json"),
        "Log format.",
        ("MODEL_AGENT_LOG_FORMAT",),
        ("run", "pull", "inspect", "gpu-shape", "status"),
    ),
)

_BY_FIELD = {flag.field: flag for flag in FLAGS}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Settings:
    """The agent's whole configuration. Build it with ``resolve``."""

    node_name: str | None = None
    namespace: str = "ome"
    models_root_dir: str = "/mnt/models"
    temp_dir: str | None = None
    cleanup_temp: bool = True
    download_retry: int = 3
    concurrency: int = 4
    multipart_concurrency: int = 4
    download_threads: int = 0
    multipart_threshold: int = 200 * 1024**2
    stall_timeout: float = 60.0
    data_proxy: str | None = None
    data_no_proxy: str | None = None
    ca_bundle: str | None = None
    num_download_worker: int = 5
    min_free_space: FreeSpace = dataclasses.field(default_factory=FreeSpace)
    partial_ttl: float | None = 86400.0
    orphan_grace: float | None = None
    disk_scan_interval: float | None = 300.0
    node_label_retry: int = 5
    max_concurrent_reconciles: int = 10
    config_map_sync_interval: float = 30.0
    model_watch_resync_period: float = 600.0
    relist_window: float = 30.0
    port: int = 8080
    metrics_port: int = 8080
    liveness_endpoint: str = "http://0.0.0.0:8081/healthz"
    credential_hosts: tuple[str, ...] = ()
    write_spec: bool = True
    peer_port: int = 0
    peer_address: str | None = None
    peer_token_file: str | None = None
    peer_tls_cert: str | None = None
    peer_tls_key: str | None = None
    peer_tls_ca: str | None = None
    log_level: str = "info"
    log_format: str = "text"
    # Environment only (CONTRACT.md): secrets and maps that have no flag.
    hf_token: str | None = dataclasses.field(default=None, repr=False)
    hf_endpoint: str = "https://huggingface.co"
    oci_config_file: str | None = None
    oci_endpoint: str | None = None
    #: The S3, GCS, GitHub and Azure endpoints the admin configured (environment).
    store_endpoints: tuple[str, ...] = ()
    instance_type_map: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Proxies and CAs for every request (``egress.policy``), from the flags above and the
    #: environment's HTTPS_PROXY/HTTP_PROXY/NO_PROXY/SSL_CERT_FILE.
    egress: policy.Egress = dataclasses.field(default_factory=policy.Egress)

    def credential_policy(self) -> credential_rules.Policy:
        """Where the agent may send credentials (see ``trust.egress``)."""
        endpoints = (
            self.hf_endpoint,
            *((self.oci_endpoint,) if self.oci_endpoint else ()),
            *self.store_endpoints,
        )
        return credential_rules.Policy(endpoints=endpoints, hosts=self.credential_hosts)

    def require_node_name(self) -> str:
        if not self.node_name:
            raise errors.ConfigError(
                "--node-name is required: set the NODE_NAME environment variable "
                "(spec.nodeName via the downward API) or pass --node-name"
            )
        return self.node_name


def _store_endpoints(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The object-store endpoints the environment configures (credentials may go there):
    ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL``, ``STORAGE_EMULATOR_HOST``, ``GITHUB_API_URL``
    and the ``BlobEndpoint`` of ``AZURE_STORAGE_CONNECTION_STRING``."""
    found = [
        environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or "",
        environ.get("GITHUB_API_URL") or "",
    ]
    emulator = environ.get("STORAGE_EMULATOR_HOST") or ""
    found.append(emulator if "://" in emulator or not emulator else f"http://{emulator}")
    for piece in (environ.get("AZURE_STORAGE_CONNECTION_STRING") or "").split(";"):
        name, _, value = piece.partition("=")
        if name.strip() == "BlobEndpoint":
            found.append(value.strip())
    return tuple(e for e in found if e)


def _parse_instance_type_map(text: str) -> dict[str, str]:
    import json

    try:
        value = json.loads(text)
    except ValueError as exc:
        raise errors.ConfigError(f"INSTANCE_TYPE_MAP is not valid JSON: {exc}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise errors.ConfigError(
            'INSTANCE_TYPE_MAP must be a JSON object of strings, e.g. {"BM.GPU.H100.8": "H100"}'
        )
    return value


def resolve(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Build ``Settings`` from flag values (field name → text, or None when not given)
    and the environment. Raises ``ConfigError`` naming the flag of a bad value."""
    values: dict[str, Any] = {}
    for field, flag in _BY_FIELD.items():
        raw: str | None = flags.get(field)
        source = flag.flag
        if raw is None:
            for env in flag.env:
                if environ.get(env):
                    raw, source = environ[env], f"{flag.flag} (from ${env})"
                    break
        if raw is None:
            raw = flag.default
        if raw is None:
            continue
        try:
            values[field] = flag.parse(raw)
        except ValueError as exc:
            raise errors.ConfigError(f"invalid value for {source}: {exc}") from None
    token = environ.get("HF_TOKEN") or environ.get("HUGGINGFACE_TOKEN")
    if token:
        values["hf_token"] = token
    if environ.get("HF_ENDPOINT"):
        values["hf_endpoint"] = environ["HF_ENDPOINT"].rstrip("/")
    if environ.get("OCI_CONFIG_FILE"):
        values["oci_config_file"] = environ["OCI_CONFIG_FILE"]
    if environ.get("OCI_OBJECT_STORAGE_ENDPOINT"):
        values["oci_endpoint"] = environ["OCI_OBJECT_STORAGE_ENDPOINT"]
    values["store_endpoints"] = _store_endpoints(environ)
    if environ.get("INSTANCE_TYPE_MAP"):
        values["instance_type_map"] = _parse_instance_type_map(environ["INSTANCE_TYPE_MAP"])
    values["egress"] = policy.build(
        environ,
        data_proxy=values.get("data_proxy"),
        data_no_proxy=values.get("data_no_proxy"),
        ca_bundle=values.get("ca_bundle"),
    )
    _check_peering(values)
    return Settings(**values)


def _unspecified(address: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(address.strip("[]")).is_unspecified
    except ValueError:
        return False


def _check_peering(values: Mapping[str, Any]) -> None:
    """Peering needs an address to advertise and the token; TLS needs all three files."""
    if not values.get("peer_port"):
        return
    if not values.get("peer_address"):
        raise errors.ConfigError(
            "--peer-port needs --peer-address: set POD_IP (status.podIP via the downward API) "
            "or pass --peer-address"
        )
    if _unspecified(str(values["peer_address"])):
        raise errors.ConfigError(
            f"--peer-address {values['peer_address']} is not an address other agents can "
            "reach: give this pod's own IP (status.podIP)"
        )
    if not values.get("peer_token_file"):
        raise errors.ConfigError(
            "--peer-port needs --peer-token-file (the file of the cluster's peer token): "
            "peers never serve or fetch without it"
        )
    tls = [name for name in ("peer_tls_cert", "peer_tls_key", "peer_tls_ca") if values.get(name)]
    if tls and len(tls) != 3:
        missing = ", ".join(
            "--" + n.replace("_", "-")
            for n in ("peer_tls_cert", "peer_tls_key", "peer_tls_ca")
            if n not in tls
        )
        raise errors.ConfigError(
            f"peer TLS needs --peer-tls-cert, --peer-tls-key and --peer-tls-ca: {missing} not set"
        )

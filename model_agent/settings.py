"""Every flag and environment variable of the agent, parsed into one frozen ``Settings``.

Precedence: a command-line flag beats its environment variable, which beats the default.
Pure: no I/O; the CLI hands in ``argv`` values and ``os.environ``. Invalid values raise
``errors.ConfigError`` naming the flag.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from model_agent import errors
from model_agent.egress import policy
from model_agent.flags import cluster, node, peering, values
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

# The value types and parsers, where callers have always found them.
Flag = values.Flag
FreeSpace = values.FreeSpace
parse_bool = values.parse_bool
parse_duration = values.parse_duration
parse_free_space = values.parse_free_space
parse_optional_duration = values.parse_optional_duration
parse_size = values.parse_size

#: The documented flags, in the order ``--help`` shows them.
FLAGS: tuple[values.Flag, ...] = (
    *node.FLAGS,
    *cluster.FLAGS,
    *peering.FLAGS,
    *cluster.LOGGING,
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

"""The flags of peer distribution (``peers/``): the port, the address, the token and TLS."""

from __future__ import annotations

from model_agent.flags import values

FLAGS: tuple[values.Flag, ...] = (
    values.Flag(
        "peer_port",
        "--peer-port",
        "0",
        values.port,
        "Port of the peer server, which serves this node's model files to the other agents "
        "and lets this agent fetch from them (0: peering off).",
        ("MODEL_AGENT_PEER_PORT",),
    ),
    values.Flag(
        "peer_address",
        "--peer-address",
        None,
        values.text,
        "Address the peer server binds and advertises to the other agents (the pod IP).",
        ("MODEL_AGENT_PEER_ADDRESS", "POD_IP"),
    ),
    values.Flag(
        "peer_token_file",
        "--peer-token-file",
        None,
        values.text,
        "File holding the cluster's peer token; every peer request must carry it "
        "(required with --peer-port).",
        ("MODEL_AGENT_PEER_TOKEN_FILE",),
    ),
    values.Flag(
        "peer_tls_cert",
        "--peer-tls-cert",
        None,
        values.text,
        "Certificate (PEM) the peer server serves HTTPS with (with --peer-tls-key and "
        "--peer-tls-ca).",
        ("MODEL_AGENT_PEER_TLS_CERT",),
    ),
    values.Flag(
        "peer_tls_key",
        "--peer-tls-key",
        None,
        values.text,
        "Private key (PEM) of --peer-tls-cert.",
        ("MODEL_AGENT_PEER_TLS_KEY",),
    ),
    values.Flag(
        "peer_tls_ca",
        "--peer-tls-ca",
        None,
        values.text,
        "CA bundle (PEM) that signed the peers' certificates; this agent fetches from peers "
        "over HTTPS and checks their certificate against it.",
        ("MODEL_AGENT_PEER_TLS_CA",),
    ),
)

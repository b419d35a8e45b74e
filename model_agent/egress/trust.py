"""Which CA bundle verifies TLS peers, and what to tell the admin when verification fails.

Order: ``--ca-bundle`` (``MODEL_AGENT_CA_BUNDLE``), then ``SSL_CERT_FILE``,
``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``; ``SSL_CERT_DIR`` adds a hashed directory. A bundle
replaces the default trust store, as it does for curl, OpenSSL and requests: a bundle for a
TLS-intercepting proxy must hold that proxy's CA (plus the public roots when some hosts are not
intercepted). None set: each client keeps its default store.

Pure: names and messages only; the edges load the files.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

__all__ = ["Trust", "certificate_message", "resolve"]

#: Environment variables naming a CA bundle file, in the order they are read.
FILE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclasses.dataclass(frozen=True)
class Trust:
    """A CA bundle file and/or hashed directory, and where the setting came from."""

    cafile: str | None = None
    capath: str | None = None
    source: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.cafile or self.capath)


def resolve(flag: str | None, environ: Mapping[str, str]) -> Trust:
    """The trust store the agent uses: the flag, else the first CA variable set."""
    capath = environ.get("SSL_CERT_DIR", "").strip() or None
    if flag:
        return Trust(cafile=flag, capath=capath, source="--ca-bundle")
    for name in FILE_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return Trust(cafile=value, capath=capath, source=f"${name}")
    if capath:
        return Trust(capath=capath, source="$SSL_CERT_DIR")
    return Trust()


def certificate_message(host: str, detail: str, trust: Trust) -> str:
    """The error text of a failed certificate check: the host, what failed, which CA bundle
    was in use and which setting to change."""
    used = f"the CA bundle from {trust.source} ({trust.cafile or trust.capath})"
    store = used if trust.configured else "the default trust store"
    return (
        f"TLS certificate verification failed for {host}: {detail}. Verified against {store}; "
        "if a TLS-intercepting proxy or a private CA signs this host, set SSL_CERT_FILE (or "
        "--ca-bundle / MODEL_AGENT_CA_BUNDLE) to a PEM bundle that contains that CA"
    )

"""Which proxy, if any, carries a request to a URL: ``HTTP(S)_PROXY`` and ``NO_PROXY`` as curl and
Go read them.

Variables: ``https_proxy``/``HTTPS_PROXY`` for https URLs, ``http_proxy``/``HTTP_PROXY`` for
http URLs (the lowercase form wins, as in curl and Python; ``HTTP_PROXY`` is ignored when
``REQUEST_METHOD`` is set, Go's CGI guard), ``no_proxy``/``NO_PROXY`` for exceptions. A proxy
value without a scheme is ``http://``; ``http`` and ``https`` proxies are supported, anything
else (``socks5://``) is refused with an error naming the variable.

``NO_PROXY`` is a comma-separated list: ``*`` alone disables proxying; an IP address or CIDR
block (``10.0.0.0/8``, ``::1``, ``fd00::/8``) matches IP-literal hosts inside it; a name
matches that host and every subdomain (``example.com``, ``.example.com`` and ``*.example.com``
all match ``example.com`` and ``a.example.com``, as in curl; Go's leading dot excludes the bare
domain); ``host:port`` or ``ip:port`` matches that port only (Go's extension). Loopback is
proxied unless listed (curl's rule; Go never proxies it): list ``localhost,127.0.0.1`` as curl
users do.

Pure: parses values handed in; never reads ``os.environ`` or logs. ``redact`` gives the form
of a proxy URL that may be logged (credentials dropped).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Mapping
from urllib.parse import urlsplit

from model_agent import errors

__all__ = [
    "NoProxyRule",
    "ProxyConfig",
    "from_environ",
    "parse_no_proxy",
    "parse_proxy_url",
    "proxy_for",
    "redact",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_PROXY_SCHEMES = frozenset({"http", "https"})
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclasses.dataclass(frozen=True)
class NoProxyRule:
    """One ``NO_PROXY`` entry: a network (for IP-literal hosts) or a domain, optionally a port."""

    domain: str | None = None
    network: _IPNetwork | None = None
    port: int | None = None

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            address = _ip(host)
            return address is not None and address in self.network
        assert self.domain is not None
        return host == self.domain or host.endswith("." + self.domain)


@dataclasses.dataclass(frozen=True)
class ProxyConfig:
    """Proxies per URL scheme plus the exceptions. ``bypass_all``: ``NO_PROXY=*``."""

    http: str | None = None
    https: str | None = None
    no_proxy: tuple[NoProxyRule, ...] = ()
    bypass_all: bool = False

    @property
    def enabled(self) -> bool:
        return bool(self.http or self.https) and not self.bypass_all


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``1.2.3.4:80`` -> (host, port); bare IPv6 keeps its colons."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


def parse_no_proxy(text: str) -> tuple[tuple[NoProxyRule, ...], bool]:
    """The rules of a ``NO_PROXY`` value and whether it is ``*`` (bypass everything).
    Unusable entries are skipped, as curl and Go do (best effort, never an error)."""
    rules: list[NoProxyRule] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return (), True
        if "/" in entry:
            try:
                network = ipaddress.ip_network(
                    entry.replace("[", "").replace("]", ""), strict=False
                )
            except ValueError:
                continue
            rules.append(NoProxyRule(network=network))
            continue
        host, port = _split_port(entry)
        if _ip(host) is not None:
            address = ipaddress.ip_address(host.strip("[]"))
            rules.append(NoProxyRule(network=ipaddress.ip_network(address), port=port))
            continue
        host = host.removeprefix("*").lstrip(".").rstrip(".")
        if host:
            rules.append(NoProxyRule(domain=host, port=port))
    return tuple(rules), False


def parse_proxy_url(value: str, *, source: str) -> str:
    """A proxy URL with its scheme (``http://`` when none); ``source`` names the variable or
    flag in the error."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError as exc:
        raise errors.ConfigError(f"{source}: {redact(text)!r} is not a proxy URL: {exc}") from None
    if parts.scheme.lower() not in _PROXY_SCHEMES:
        raise errors.ConfigError(
            f"{source}: proxy scheme {parts.scheme!r} is not supported (use http:// or https://)"
        )
    if not parts.hostname:
        raise errors.ConfigError(f"{source}: {redact(text)!r} names no proxy host")
    return text


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def from_environ(environ: Mapping[str, str]) -> ProxyConfig:
    """The proxy configuration of an environment (curl's and Go's variables)."""
    https = _first(environ, "https_proxy", "HTTPS_PROXY")
    http_names = ["http_proxy"] if environ.get("REQUEST_METHOD") else ["http_proxy", "HTTP_PROXY"]
    http = _first(environ, *http_names)
    no_proxy = _first(environ, "no_proxy", "NO_PROXY")
    rules, bypass_all = parse_no_proxy(no_proxy[1]) if no_proxy else ((), False)
    return ProxyConfig(
        http=parse_proxy_url(http[1], source=f"${http[0]}") if http else None,
        https=parse_proxy_url(https[1], source=f"${https[0]}") if https else None,
        no_proxy=rules,
        bypass_all=bypass_all,
    )


def proxy_for(url: str, config: ProxyConfig) -> str | None:
    """The proxy URL for a request to ``url``, or None to connect directly."""
    if not config.enabled:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    proxy = config.https if scheme == "https" else config.http if scheme == "http" else None
    if proxy is None:
        return None
    host = (parts.hostname or "").rstrip(".").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    if any(rule.matches(host, port) for rule in config.no_proxy):
        return None
    return proxy


def redact(proxy_url: str | None) -> str:
    """A proxy URL fit for logs and errors: user and password replaced by ``***``."""
    if not proxy_url:
        return "direct"
    parts = urlsplit(proxy_url)
    if "@" not in parts.netloc:
        return proxy_url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()

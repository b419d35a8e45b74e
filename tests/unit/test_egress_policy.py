"""The pure egress policy: proxy variables, NO_PROXY matching, the data-path override, CA bundles.

Aspects: which variable wins (lowercase first, HTTP_PROXY ignored under CGI), a proxy without a
scheme is http, unsupported schemes and bad ports are refused naming the variable; NO_PROXY as
curl and Go read it (``*``, suffix/domain, leading dot and ``*.``, IPv4/IPv6 literals, CIDR,
``host:port``, no partial-label match, loopback proxied unless listed); the data override
(URL, ``direct``, its own NO_PROXY) leaves metadata alone; credentials are redacted; the CA
bundle order (flag, SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, SSL_CERT_DIR) and the
certificate message names the variable to set.
"""

from __future__ import annotations

import pytest

from model_agent import errors, settings
from model_agent.egress import policy, proxies, trust

PROXY = "http://proxy.corp:3128"
FILE = "$SSL_CERT_FILE"


@pytest.mark.parametrize(
    ("environ", "url", "expected"),
    [
        ({"HTTPS_PROXY": PROXY}, "https://huggingface.co/x", PROXY),
        ({"https_proxy": PROXY}, "https://huggingface.co/x", PROXY),
        ({"https_proxy": PROXY, "HTTPS_PROXY": "http://other:1"}, "https://h/x", PROXY),
        ({"HTTPS_PROXY": PROXY}, "http://h/x", None),  # http URLs use HTTP_PROXY only
        ({"HTTP_PROXY": PROXY}, "http://h/x", PROXY),
        ({"HTTP_PROXY": PROXY}, "https://h/x", None),
        ({"HTTP_PROXY": PROXY, "REQUEST_METHOD": "GET"}, "http://h/x", None),  # CGI guard
        ({"http_proxy": PROXY, "REQUEST_METHOD": "GET"}, "http://h/x", PROXY),
        ({"HTTPS_PROXY": "proxy.corp:3128"}, "https://h/x", PROXY),  # no scheme: http
        ({"HTTPS_PROXY": "https://p:443"}, "https://h/x", "https://p:443"),
        ({"HTTPS_PROXY": "  "}, "https://h/x", None),
        ({}, "https://h/x", None),
    ],
)
def test_proxy_variables_pick_the_proxy_per_scheme(
    environ: dict[str, str], url: str, expected: str | None
) -> None:
    assert proxies.proxy_for(url, proxies.from_environ(environ)) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("socks5://p:1080", "scheme 'socks5'"),
        ("http://p:99999", "not a proxy URL"),
        ("http://:3128", "names no proxy host"),
    ],
)
def test_a_bad_proxy_value_is_refused_naming_the_variable(value: str, fragment: str) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        proxies.from_environ({"HTTPS_PROXY": value})
    assert "$HTTPS_PROXY" in str(caught.value) and fragment in str(caught.value)


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("*", "https://anything.example/x", True),
        ("example.com", "https://example.com/x", True),
        ("example.com", "https://a.b.example.com/x", True),
        ("example.com", "https://notexample.com/x", False),  # labels, not characters
        ("example.com", "https://example.com.evil/x", False),
        (".example.com", "https://example.com/x", True),  # curl: the domain itself too
        (".example.com", "https://a.example.com/x", True),
        ("*.example.com", "https://a.example.com/x", True),
        ("EXAMPLE.com", "https://Example.COM./x", True),  # case and trailing dot
        ("example.com:8443", "https://example.com:8443/x", True),
        ("example.com:8443", "https://example.com/x", False),  # port must match
        ("10.0.0.0/8", "https://10.96.0.1/x", True),
        ("10.0.0.0/8", "https://11.0.0.1/x", False),
        ("10.0.0.0/8", "https://ten.example/x", False),  # CIDR never matches names
        ("10.96.0.1", "https://10.96.0.1:6443/x", True),
        ("10.96.0.1:443", "https://10.96.0.1:6443/x", False),
        ("::1", "https://[::1]:8080/x", True),
        ("[::1]:8080", "https://[::1]:8080/x", True),
        ("fd00::/8", "https://[fd12::1]/x", True),
        ("[fd00::]/8", "https://[fd12::1]/x", True),
        ("localhost", "https://127.0.0.1/x", False),  # no DNS: names match names
        ("", "https://127.0.0.1/x", False),  # loopback is proxied unless listed (curl)
        (" a.com , ,b.com ", "https://b.com/x", True),
        ("300.1.1.1/8,bad/entry", "https://h/x", False),  # unusable entries are skipped
        ("huggingface.co", "https://cdn-lfs.hf.co/x", False),
    ],
)
def test_no_proxy_matches_as_curl_and_go_do(no_proxy: str, url: str, bypassed: bool) -> None:
    config = proxies.from_environ({"HTTPS_PROXY": PROXY, "NO_PROXY": no_proxy})
    assert (proxies.proxy_for(url, config) is None) is bypassed


def test_lowercase_no_proxy_wins_over_uppercase() -> None:
    config = proxies.from_environ({"HTTPS_PROXY": PROXY, "no_proxy": "a.com", "NO_PROXY": "b.com"})
    assert proxies.proxy_for("https://a.com/", config) is None
    assert proxies.proxy_for("https://b.com/", config) == PROXY


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@proxy:3128", "http://***@proxy:3128"),
        ("http://token@proxy:3128", "http://***@proxy:3128"),
        ("http://proxy:3128", "http://proxy:3128"),
        (None, "direct"),
    ],
)
def test_redact_drops_proxy_credentials(url: str | None, shown: str) -> None:
    assert proxies.redact(url) == shown


def test_the_data_proxy_flag_overrides_the_environment_for_data_only() -> None:
    environ = {"HTTPS_PROXY": PROXY, "NO_PROXY": "mirror.internal"}
    egress = policy.build(environ, data_proxy="http://127.0.0.1:65001")
    url = "https://huggingface.co/org/repo/resolve/sha/file"
    assert egress.metadata_proxy(url) == PROXY
    assert egress.data_proxy(url) == "http://127.0.0.1:65001"
    assert egress.data_proxy("http://plain.example/x") == "http://127.0.0.1:65001"
    assert egress.data_proxy("https://mirror.internal/x") is None  # NO_PROXY still applies


def test_data_proxy_direct_and_data_no_proxy() -> None:
    environ = {"HTTPS_PROXY": PROXY, "NO_PROXY": "mirror.internal"}
    direct = policy.build(environ, data_proxy="DIRECT")
    assert direct.data_proxy("https://huggingface.co/x") is None
    assert direct.metadata_proxy("https://huggingface.co/x") == PROXY
    own = policy.build(environ, data_no_proxy="cdn.example")
    assert own.data_proxy("https://mirror.internal/x") == PROXY
    assert own.data_proxy("https://a.cdn.example/x") is None
    assert own.metadata_proxy("https://mirror.internal/x") is None


def test_a_bad_data_proxy_names_the_flag() -> None:
    with pytest.raises(errors.ConfigError, match="--data-proxy"):
        policy.build({}, data_proxy="socks5://p:1")


@pytest.mark.parametrize(
    ("flag", "environ", "expected"),
    [
        (None, {}, trust.Trust()),
        ("/ca.pem", {"SSL_CERT_FILE": "/x"}, trust.Trust("/ca.pem", None, "--ca-bundle")),
        (None, {"SSL_CERT_FILE": "/a", "REQUESTS_CA_BUNDLE": "/b"}, trust.Trust("/a", None, FILE)),
        (None, {"REQUESTS_CA_BUNDLE": "/b"}, trust.Trust("/b", None, "$REQUESTS_CA_BUNDLE")),
        (None, {"CURL_CA_BUNDLE": "/c"}, trust.Trust("/c", None, "$CURL_CA_BUNDLE")),
        (None, {"SSL_CERT_DIR": "/d"}, trust.Trust(None, "/d", "$SSL_CERT_DIR")),
        (None, {"SSL_CERT_FILE": "/a", "SSL_CERT_DIR": "/d"}, trust.Trust("/a", "/d", FILE)),
    ],
)  # fmt: skip
def test_the_ca_bundle_comes_from_the_flag_then_the_variables(
    flag: str | None, environ: dict[str, str], expected: trust.Trust
) -> None:
    assert trust.resolve(flag, environ) == expected


def test_the_certificate_message_names_the_bundle_and_the_variable_to_set() -> None:
    used = trust.Trust("/etc/ca.pem", None, "$SSL_CERT_FILE")
    text = trust.certificate_message("hub:443", "self-signed certificate", used)
    assert "hub:443" in text and "self-signed certificate" in text
    assert "/etc/ca.pem" in text and "SSL_CERT_FILE" in text and "--ca-bundle" in text
    assert "default trust store" in trust.certificate_message("h", "x", trust.Trust())


def test_settings_build_the_egress_policy_from_flags_and_environment() -> None:
    config = settings.resolve(
        {"data_proxy": "http://df:65001", "ca_bundle": "/ca.pem"},
        {"HTTPS_PROXY": PROXY, "MODEL_AGENT_DATA_NO_PROXY": "peer.internal"},
    )
    assert config.egress.metadata_proxy("https://h/x") == PROXY
    assert config.egress.data_proxy("https://h/x") == "http://df:65001"
    assert config.egress.data_proxy("https://peer.internal/x") is None
    assert config.egress.ca == trust.Trust("/ca.pem", None, "--ca-bundle")
    with pytest.raises(errors.ConfigError, match=r"\$HTTPS_PROXY"):
        settings.resolve({}, {"HTTPS_PROXY": "ftp://p"})


def test_describe_shows_proxies_without_credentials_and_the_ca_source() -> None:
    egress = policy.build(
        {"HTTPS_PROXY": "http://user:s3cret@proxy:3128", "NO_PROXY": "a,b"},
        data_proxy="direct",
        ca_bundle="/ca.pem",
    )
    text = policy.describe(egress)
    assert "s3cret" not in text and "user" not in text
    assert "https via http://***@proxy:3128" in text and "2 NO_PROXY entries" in text
    assert "data direct" in text and "/ca.pem (from --ca-bundle)" in text
    assert policy.describe(policy.Egress()) == "egress: metadata direct"


def test_an_empty_data_no_proxy_proxies_every_data_request_as_curls_noproxy_does() -> None:
    config = settings.resolve(
        {"data_no_proxy": ""}, {"HTTPS_PROXY": PROXY, "NO_PROXY": "mirror.internal"}
    )
    assert config.egress.data_proxy("https://mirror.internal/x") == PROXY
    assert config.egress.metadata_proxy("https://mirror.internal/x") is None

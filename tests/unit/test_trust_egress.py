"""Where a credential may go (``trust.egress``) and which directories overlap (``trust.paths``).

Aspects: configured endpoints match on host and port (scheme default ports filled in), admin
entries as host (any port), host:port and *.domain, case and trailing dots ignored, OCI's own
region services allowed, anything else refused with a message naming the field and the flag;
bad flag values are refused naming the entry; overlap is component-wise.
"""

from __future__ import annotations

import pytest

from model_agent import errors, settings
from model_agent.trust import egress, paths

POLICY = egress.Policy(
    endpoints=("https://huggingface.co", "http://127.0.0.1:8000"),
    hosts=("mirror.corp", "10.0.0.5:9000", "*.models.corp"),
)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://huggingface.co", True),
        ("https://HuggingFace.co.:443/api", True),
        ("http://huggingface.co", False),  # port 80 is not the configured 443
        ("https://huggingface.co.evil.example", False),
        ("https://evilhuggingface.co", False),
        ("http://127.0.0.1:8000/x", True),
        ("http://127.0.0.1:8001", False),
        ("https://mirror.corp:8443", True),
        ("http://10.0.0.5:9000", True),
        ("http://10.0.0.5:9001", False),
        ("https://eu.models.corp", True),
        ("https://models.corp", False),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com", True),
        ("https://ns.objectstorage.eu-frankfurt-1.oci.customer-oci.com", True),
        ("https://objectstorage.us-ashburn-1.oraclecloud.com.evil.example", False),
        ("https://user:pw@evil.example@huggingface.co", True),  # the host is huggingface.co
        ("ftp://huggingface.co", False),
        ("not a url", False),
        ("http://[::1]:8000", False),
    ],
)
def test_a_credential_goes_only_to_configured_and_listed_hosts(url: str, allowed: bool) -> None:
    assert egress.allowed(url, POLICY) is allowed


def test_a_refusal_names_the_field_and_the_flag() -> None:
    with pytest.raises(errors.EndpointNotAllowedError) as caught:
        egress.check_endpoint("http://tenant.example:8080", POLICY)
    assert "spec.storage.parameters.endpoint" in str(caught.value)
    assert "--credential-hosts" in str(caught.value)
    assert caught.value.reason == "EndpointNotAllowed" and not caught.value.retryable


@pytest.mark.parametrize("bad", ["http://x.example", "a/b", "*", "x y", "-x"])
def test_bad_credential_hosts_values_are_refused_naming_the_entry(bad: str) -> None:
    with pytest.raises(errors.ConfigError, match="--credential-hosts"):
        settings.resolve({"credential_hosts": f"ok.example,{bad}"}, {})


def test_the_settings_policy_holds_the_configured_endpoints_and_the_list() -> None:
    config = settings.resolve(
        {},
        {
            "HF_ENDPOINT": "http://127.0.0.1:9/",
            "OCI_OBJECT_STORAGE_ENDPOINT": "http://127.0.0.1:10",
            "MODEL_AGENT_CREDENTIAL_HOSTS": " Mirror.Corp , *.models.corp:443 ",
        },
    )
    policy = config.credential_policy()
    assert config.credential_hosts == ("mirror.corp", "*.models.corp:443")
    assert egress.allowed("http://127.0.0.1:9", policy)
    assert egress.allowed("http://127.0.0.1:10", policy)
    assert egress.allowed("https://a.models.corp", policy)
    assert not egress.allowed("http://a.models.corp:8080", policy)
    assert not egress.allowed("http://127.0.0.1:11", policy)


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("/m/a", "/m/a", True),
        ("/m/a", "/m/a/sub", True),
        ("/m/a/sub", "/m/a", True),
        ("/m/a", "/m/ab", False),
        ("/m/a/", "/m/a", True),
        ("/m/a", "/m/b", False),
    ],
)
def test_directories_overlap_when_equal_or_nested(a: str, b: str, overlap: bool) -> None:
    assert paths.overlaps(a, b) is overlap

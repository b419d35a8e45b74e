"""What the fake API server answers for kubectl, checked over HTTPS without kubectl (which
``tests/e2e/test_kubectl.py`` drives where it is installed).

Aspects: the TLS certificate verifies against the kubeconfig's CA and nothing else; the
OpenAPI v3 index and group documents (kind schemas with their group-version-kind, PATCH
operations that take fieldValidation); Table responses with the CRD's printer columns;
fieldValidation=Strict rejects unknown fields (the default prunes them); server-side apply
creates, records field managers, conflicts on a field another manager set and takes it over
with force; dryRun stores nothing; every write records its manager in managedFields.
"""

from __future__ import annotations

import json
import pathlib
import ssl

import aiohttp
import pytest
import yaml

from tests.harness.kube import FakeKube

BASE = "/apis/ome.io/v1beta1/namespaces/default/basemodels"
APPLY = "application/apply-patch+yaml"


def session(kube: FakeKube, **headers: str) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {kube.token}", **headers},
        connector=aiohttp.TCPConnector(ssl=kube.ssl_context or True),
    )


def basemodel(name: str = "m", **spec) -> dict:
    return {
        "apiVersion": "ome.io/v1beta1",
        "kind": "BaseModel",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"storage": {"storageUri": "hf://o/r"}, **spec},
    }


async def apply(kube, body: dict, manager: str, force: bool = False) -> tuple[int, dict]:
    params = {"fieldManager": manager} | ({"force": "true"} if force else {})
    async with session(kube) as s:
        url = f"{kube.url}{BASE}/{body['metadata']['name']}"
        data = yaml.safe_dump(body)
        async with s.patch(url, params=params, data=data, headers={"Content-Type": APPLY}) as r:
            return r.status, await r.json()


async def test_the_certificate_verifies_only_against_the_kubeconfig_ca(kube_api):
    with pytest.raises(aiohttp.ClientConnectorCertificateError):
        async with aiohttp.ClientSession() as s, s.get(f"{kube_api.url}/version"):
            pass  # pragma: no cover
    context = ssl.create_default_context(cadata=kube_api.tls.ca_pem.decode())
    async with aiohttp.ClientSession() as s, s.get(f"{kube_api.url}/version", ssl=context) as r:
        assert r.status == 200


def test_the_kubeconfig_carries_the_ca_and_an_https_server(kube_api):
    config = json.loads(pathlib.Path(kube_api.kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    assert cluster == {"server": kube_api.url, "certificate-authority-data": kube_api.ca_data}
    assert kube_api.url.startswith("https://")


async def test_openapi_v3_documents_carry_the_crd_schema_and_field_validation(kube_api):
    async with session(kube_api) as s:
        async with s.get(f"{kube_api.url}/openapi/v3") as r:
            index = (await r.json())["paths"]
        assert {"api/v1", "apis/ome.io/v1beta1", "apis/apps/v1"} <= set(index)
        async with s.get(kube_api.url + index["apis/ome.io/v1beta1"]["serverRelativeURL"]) as r:
            doc = await r.json()
    schema = doc["components"]["schemas"]["io.ome.v1beta1.BaseModel"]
    assert schema["x-kubernetes-group-version-kind"] == [
        {"group": "ome.io", "version": "v1beta1", "kind": "BaseModel"}
    ]
    assert "storageUri" in schema["properties"]["spec"]["properties"]["storage"]["properties"]
    patch = doc["paths"][f"{BASE.replace('default', '{namespace}')}/{{name}}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]


async def test_a_table_has_the_printer_columns_and_row_metadata(kube_api):
    kube_api.create(basemodel(vendor="acme", version="2"))
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with session(kube_api, Accept=accept) as s, s.get(f"{kube_api.url}{BASE}") as r:
        table = await r.json()
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:4] == ["Name", "Disabled", "Version", "Vendor"] and names[-1] == "Age"
    (row,) = table["rows"]
    assert row["cells"][:4] == ["m", None, "2", "acme"]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == "m"


async def test_strict_field_validation_rejects_unknown_fields_and_the_default_prunes(kube_api):
    body = basemodel()
    body["spec"]["bogus"] = 1
    async with session(kube_api) as s:
        url = f"{kube_api.url}{BASE}"
        async with s.post(url, json=body, params={"fieldValidation": "Strict"}) as r:
            assert r.status == 400
            assert 'unknown field "spec.bogus"' in (await r.json())["message"]
        async with s.post(url, json=body) as r:
            assert r.status == 201
    assert "bogus" not in kube_api.get("basemodels", "m", "default")["spec"]


async def test_server_side_apply_conflicts_and_force(kube_api):
    status, created = await apply(kube_api, basemodel(version="1"), "alice")
    assert status == 201
    assert [m["manager"] for m in created["metadata"]["managedFields"]] == ["alice"]
    status, _ = await apply(kube_api, basemodel(version="1", vendor="x"), "bob")
    assert status == 200  # the same value is shared, a new field is bob's
    status, conflict = await apply(kube_api, basemodel(version="2"), "bob")
    assert status == 409
    assert conflict["details"]["causes"] == [
        {
            "type": "FieldManagerConflict",
            "message": 'conflict with "alice" using ome.io/v1beta1',
            "field": ".spec.version",
        }
    ]
    status, forced = await apply(kube_api, basemodel(version="2"), "bob", force=True)
    assert status == 200 and forced["spec"]["version"] == "2"
    owners = {m["manager"]: m["fieldsV1"] for m in forced["metadata"]["managedFields"]}
    assert "f:version" in owners["bob"]["f:spec"]
    assert "f:version" not in owners["alice"]["f:spec"]
    # bob applies again without vendor: the field he alone owned goes
    status, pruned = await apply(kube_api, basemodel(version="2"), "bob")
    assert status == 200 and "vendor" not in pruned["spec"]


async def test_dry_run_stores_nothing_and_writes_record_their_manager(kube_api):
    kube_api.create(basemodel())
    before = kube_api.resource_version
    merge = {"Content-Type": "application/merge-patch+json"}
    async with session(kube_api, **{"User-Agent": "tool/1.0"}) as s:
        url = f"{kube_api.url}{BASE}/m"
        patch = json.dumps({"spec": {"vendor": "dry"}})
        async with s.patch(url, data=patch, params={"dryRun": "All"}, headers=merge) as r:
            assert r.status == 200 and (await r.json())["spec"]["vendor"] == "dry"
        assert kube_api.resource_version == before
        assert "vendor" not in kube_api.get("basemodels", "m", "default")["spec"]
        async with s.patch(url, data=patch, headers=merge) as r:
            managers = [m["manager"] for m in (await r.json())["metadata"]["managedFields"]]
        assert managers == ["tool"]  # the User-Agent up to its first "/"


async def test_a_watch_for_tables_sends_one_row_tables_with_headers_once(kube_api):
    kube_api.create(basemodel(vendor="acme"))
    since = str(kube_api.resource_version)
    for version in ("7", "8"):
        kube_api.patch("basemodels", "m", {"spec": {"version": version}}, "default")
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    params = {"watch": "true", "resourceVersion": since, "timeoutSeconds": "1"}
    async with session(kube_api, Accept=accept) as s:
        async with s.get(f"{kube_api.url}{BASE}", params=params) as r:
            first, second = [json.loads(line) async for line in r.content]
    assert first["type"] == second["type"] == "MODIFIED"
    assert first["object"]["kind"] == second["object"]["kind"] == "Table"
    assert first["object"]["columnDefinitions"][0]["name"] == "Name"
    assert second["object"]["columnDefinitions"] == []
    assert first["object"]["rows"][0]["cells"][:4] == ["m", None, "7", "acme"]
    assert second["object"]["rows"][0]["cells"][2] == "8"

"""The resource catalog of the fake Kubernetes API: which kinds exist, where they live in URLs,
and the discovery documents (``/api``, ``/apis``, ``/api/v1``, ``/apis/{group}/{version}``)
that Kopf and kubernetes-asyncio read.

Custom resources come from the CRD YAML in ``manifests/crds/`` itself, so the fake serves
exactly the group, version, plural, kind and scope that the cluster would.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

CRD_DIR = pathlib.Path(__file__).resolve().parents[2] / "manifests" / "crds"

_ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclasses.dataclass(frozen=True)
class Resource:
    """One served resource (a group/version/plural)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    builtin: bool = True
    crd: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``plural`` for the core group, ``plural.group`` otherwise (kubectl style)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def url(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base + (f"/{name}" if name is not None else "")


BUILTINS: tuple[Resource, ...] = (
    Resource("", "v1", "namespaces", "Namespace", False, "namespace", ("ns",), ("status",)),
    Resource("", "v1", "nodes", "Node", False, "node", ("no",), ("status",)),
    Resource("", "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    Resource("", "v1", "secrets", "Secret", True, "secret"),
    Resource("", "v1", "events", "Event", True, "event", ("ev",)),
    Resource("", "v1", "pods", "Pod", True, "pod", ("po",), ("status",)),
    Resource("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",)),
    Resource("events.k8s.io", "v1", "events", "Event", True, "event", ("ev",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    # stored generically (no controllers behind them), so that the manifests apply
    Resource("", "v1", "services", "Service", True, "service", ("svc",), ("status",)),
    Resource("apps", "v1", "daemonsets", "DaemonSet", True, "daemonset", ("ds",), ("status",)),
    Resource(
        "apps", "v1", "deployments", "Deployment", True, "deployment", ("deploy",), ("status",)
    ),
    Resource(
        "rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False, "clusterrole"
    ),
    Resource(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        False,
        "clusterrolebinding",
    ),
    Resource("rbac.authorization.k8s.io", "v1", "roles", "Role", True, "role"),
    Resource("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True, "rolebinding"),
    Resource(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        "poddisruptionbudget",
        ("pdb",),
        ("status",),
    ),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "customresourcedefinition",
        ("crd", "crds"),
        ("status",),
    ),
)


def load_crds(directory: pathlib.Path = CRD_DIR) -> list[Resource]:
    """Every served version of every CRD in ``directory`` (``*.yaml``), as resources."""
    stamp = tuple((p.name, p.stat().st_mtime_ns) for p in sorted(directory.glob("*.yaml")))
    return list(_load_crds(directory, stamp))


@functools.lru_cache(maxsize=8)
def _load_crds(directory: pathlib.Path, stamp: tuple[tuple[str, int], ...]) -> tuple[Resource, ...]:
    found: list[Resource] = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                found.extend(crd_resources(doc))
    return tuple(found)


def crd_resources(crd: Mapping[str, Any]) -> list[Resource]:
    spec = crd["spec"]
    names = spec["names"]
    return [
        Resource(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular", names["kind"].lower()),
            short_names=tuple(names.get("shortNames", ())),
            subresources=tuple(sorted((version.get("subresources") or {}).keys())),
            builtin=False,
            crd=crd,
        )
        for version in spec["versions"]
        if version.get("served", True)
    ]


class Catalog:
    """Lookup of resources by URL parts or by the short names tests use."""

    def __init__(self, resources: Iterable[Resource]) -> None:
        self.resources: list[Resource] = list(resources)
        self._by_url = {(r.group, r.version, r.plural): r for r in self.resources}

    def by_url(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_url.get((group, version, plural))

    def resolve(self, name: str) -> Resource:
        """``configmaps``, ``events.events.k8s.io``, ``ome.io/v1beta1/basemodels``, ``cm``,
        ``BaseModel``: the core group wins a plain-name tie (``events`` is core v1)."""
        if name.count("/") == 2:
            group, version, plural = name.split("/")
            found = self.by_url(group, version, plural)
            if found is not None:
                return found
        matches = [
            r
            for r in self.resources
            if name in (r.plural, r.qualified, r.kind, r.singular) or name in r.short_names
        ]
        if not matches:
            raise KeyError(f"unknown resource {name!r}")
        matches.sort(key=lambda r: (r.group != "", r.group))
        return matches[0]

    # --- discovery documents -------------------------------------------------------------

    def groups(self) -> dict[str, list[str]]:
        versions: dict[str, list[str]] = {}
        for r in self.resources:
            if r.version not in versions.setdefault(r.group, []):
                versions[r.group].append(r.version)
        return versions

    def api_versions(self) -> dict[str, Any]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        }

    def api_group(self, group: str) -> dict[str, Any] | None:
        versions = self.groups().get(group)
        if not group or not versions:
            return None
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": entries,
            "preferredVersion": entries[0],
        }

    def api_group_list(self) -> dict[str, Any]:
        groups = [self.api_group(g) for g in self.groups() if g]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        served = [r for r in self.resources if (r.group, r.version) == (group, version)]
        if not served:
            return None
        entries: list[dict[str, Any]] = []
        for r in served:
            entries.append(_resource_entry(r, r.plural, _ALL_VERBS))
            for sub in r.subresources:
                entries.append(_resource_entry(r, f"{r.plural}/{sub}", ("get", "patch", "update")))
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    def paths(self) -> list[str]:
        paths = {"/api", "/api/v1", "/apis", "/version"}
        for group, versions in self.groups().items():
            if group:
                paths.add(f"/apis/{group}")
                paths.update(f"/apis/{group}/{v}" for v in versions)
        return sorted(paths)


def _resource_entry(r: Resource, name: str, verbs: Sequence[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "singularName": r.singular if "/" not in name else "",
        "namespaced": r.namespaced,
        "kind": r.kind,
        "verbs": list(verbs),
    }
    if r.short_names and "/" not in name:
        entry["shortNames"] = list(r.short_names)
    return entry


def default_catalog(crd_dir: pathlib.Path = CRD_DIR) -> Catalog:
    return Catalog([*BUILTINS, *load_crds(crd_dir)])

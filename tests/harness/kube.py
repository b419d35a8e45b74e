"""``FakeKube``: a fake Kubernetes API server on 127.0.0.1 for tests, in its own thread.

It runs on its own event loop in a background thread, so it answers whoever calls it: the
test's loop (kubernetes-asyncio), Kopf in a thread, or a ``model-agent run`` subprocess; and
the test-side methods (``create``, ``patch``, ``delete``, ...) are plain synchronous calls
that produce the same watch events as API requests do.

Built on aiohttp rather than kmock 0.8: kmock changes its state before its reactions answer
(so a fault cannot be injected before a write), merges every PATCH whatever its content type,
has no PUT, no resourceVersion bookkeeping, no watch timeouts and mis-parses namespace URLs;
overriding all of that left nothing of it to keep. See ``kube_store`` for what is emulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import pathlib
import shutil
import ssl
import tempfile
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from aiohttp import web

from tests.harness import kube_counting, kube_faults, kube_http, kube_patch, kube_tls
from tests.harness.kube_resources import CRD_DIR, Catalog, Resource, default_catalog
from tests.harness.kube_store import Store

__all__ = ["ApiError", "FakeKube", "RecordedRequest"]

ApiError = kube_patch.ApiError


class RecordedRequest(NamedTuple):
    """One request as the server saw it (a 4-tuple: method, path, query, content_type)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None

    @property
    def is_watch(self) -> bool:
        return self.method == "GET" and kube_http.is_true(self.query.get("watch"))


_PUBLIC_PATHS = frozenset({"/version", "/healthz", "/livez", "/readyz"})
logger = logging.getLogger("tests.harness.kube")


class FakeKube:
    """A fake API server. ``start()`` / ``stop()``, or use it as a context manager."""

    def __init__(
        self,
        *,
        crd_dir: pathlib.Path = CRD_DIR,
        namespaces: tuple[str, ...] = ("default", "kube-system", "ome"),
        token: str | None = "fake-token",
        tls: bool = True,
    ) -> None:
        """``token``: the bearer token every request but /version and the health paths
        must carry (401 otherwise, as for an anonymous client); the kubeconfig carries it.
        None accepts anyone. ``tls``: serve HTTPS with a throw-away CA that the kubeconfig
        carries as ``certificate-authority-data`` (``kube_tls``); False serves plain HTTP."""
        self.catalog: Catalog = default_catalog(crd_dir)
        self.store = Store(self.catalog)
        self.token = token
        self.requests: list[RecordedRequest] = []
        #: (request, HTTP status) of every answered request, in order.
        self.responses: list[tuple[RecordedRequest, int]] = []
        #: Tracebacks of unexpected exceptions in the fake itself (a bug here, not a 500
        #: the client should retry); the ``kube_api`` fixture fails a test that leaves any.
        self.server_errors: list[str] = []
        self._api = kube_http.Api(self.store, self.catalog)
        self.faults = kube_faults.Faults()
        #: Every request by verb, resource and agent (see ``kube_counting``).
        self.counter = kube_counting.Counter(self.catalog)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._dir = pathlib.Path(tempfile.mkdtemp(prefix="fake-kube-"))
        #: The server certificate and its CA (None when serving plain HTTP).
        self.tls = kube_tls.server_certificate() if tls else None
        self.port = 0
        for crd in {id(r.crd): r.crd for r in self.catalog.resources if r.crd}.values():
            self.create(dict(crd))
        for namespace in namespaces:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})

    # --- lifecycle -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        """A client SSL context trusting the fake's CA (for test-side aiohttp sessions)."""
        return None if self.tls is None else self.tls.client_context()

    @property
    def ca_data(self) -> str | None:
        """The CA as the kubeconfig carries it (base64 PEM), None over plain HTTP."""
        return None if self.tls is None else self.tls.ca_data

    @property
    def kubeconfig(self) -> str:
        return str(self._dir / "kubeconfig")

    def start(self) -> FakeKube:
        self._thread = threading.Thread(target=self._run, name="fake-kube", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._error is not None:
            raise RuntimeError(f"the fake API server did not start: {self._error!r}")
        cluster: dict[str, Any] = {"server": self.url}
        if self.tls is not None:
            cluster["certificate-authority-data"] = self.tls.ca_data
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": cluster}],
            "users": [{"name": "fake", "user": {"token": self.token or "anonymous"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            "current-context": "fake",
        }
        pathlib.Path(self.kubeconfig).write_text(json.dumps(config))
        return self

    def add_agent(self, name: str) -> str:
        """Accept a bearer token of its own for the agent ``name`` (requests are counted
        per agent by it); the path of a kubeconfig that carries it."""
        token = f"agent-{name}"
        self.counter.agents[token] = name
        config = json.loads(pathlib.Path(self.kubeconfig).read_text())
        config["users"][0]["user"]["token"] = token
        path = self._dir / f"kubeconfig-{name}"
        path.write_text(json.dumps(config))
        return str(path)

    def stop(self) -> None:
        if self._thread is not None and self._loop is not None and self._stopping is not None:
            self.store.close_watches()
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
            self._thread = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._started.set()
        finally:
            _close_quietly(loop)

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(
            client_max_size=kube_http.MAX_BODY_BYTES, middlewares=[self.counter.middleware]
        )
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await runner.setup()
        context = None if self.tls is None else self.tls.context
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        self.port = runner.addresses[0][1]
        self._started.set()
        server = runner.server
        try:
            await self._stopping.wait()
        finally:
            self.store.close_watches()
            await runner.cleanup()
            # a TLS connection needs loop turns to finish closing: wait for every one to be
            # lost before this loop closes, or its socket is reported leaked later
            deadline = asyncio.get_running_loop().time() + 5.0
            while server is not None and server.connections:
                if asyncio.get_running_loop().time() > deadline:
                    for handler in list(server.connections):  # a peer that never answered
                        if handler.transport is not None:
                            handler.transport.abort()
                    await asyncio.sleep(0.05)
                    break
                await asyncio.sleep(0.005)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        record = RecordedRequest(
            request.method, request.path, query, kube_http.content_type(request)
        )
        self.requests.append(record)
        try:
            response = await self._answer(request, query)
        except ApiError as exc:
            response = kube_http.error_response(exc)
        except Exception:
            self.server_errors.append(traceback.format_exc())
            logger.exception("the fake API server failed on %s %s", request.method, request.path)
            response = kube_http.error_response(
                ApiError(500, "InternalError", "the fake API server failed (a bug in the fake)")
            )
        self.responses.append((record, response.status))
        return response

    async def _answer(self, request: web.Request, query: dict[str, str]) -> web.StreamResponse:
        if self.token is not None and request.path not in _PUBLIC_PATHS:
            bearer = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if bearer != self.token and bearer not in self.counter.agents:
                raise ApiError(401, "Unauthorized", "Unauthorized")
        target = kube_http.parse_path(self.catalog, request.path)
        verb = None if target is None else kube_http.verb_of(request.method, target, query)
        rule = self.faults.take(request.method, verb, request.path)
        if rule is not None and rule.delay:
            await asyncio.sleep(rule.delay)
        if rule is not None and rule.status:
            error = ApiError(rule.status, rule.reason, f"injected failure ({rule.status})")
            return kube_http.error_response(error, rule.retry_after)
        if target is None:
            if request.method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"{request.method} {request.path}")
            return kube_http.json_response(self._api.discovery(request.path))
        assert verb is not None
        return await self._api.serve(request, target, verb)

    # --- fault injection and introspection -----------------------------------------------

    def fail_next(
        self,
        count: int,
        *,
        method: str | None = None,
        path_contains: str | None = None,
        status: int = 500,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (a Status body),
        before anything is read or written. ``method`` is an HTTP method (``PATCH``) or a
        Kubernetes verb (``WATCH``, ``LIST``, ``CREATE``, ...); ``retry_after`` adds the
        Retry-After header (for 429). Rules are used in the order they were added."""
        self.faults.fail(count, method, path_contains, status, retry_after)

    def slow_next(
        self,
        count: int,
        seconds: float,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests normally but ``seconds`` late (the
        request is neither read nor applied until then). Matching as in ``fail_next``; the
        rules of both share one queue, first added first used."""
        self.faults.slow(count, seconds, method, path_contains)

    def clear_faults(self) -> None:
        self.faults.clear()

    def watch_requests(self, resource: str) -> list[RecordedRequest]:
        """The watch requests received for ``resource`` (plural name or any ``resolve`` name)."""
        res = self.catalog.resolve(resource)
        return [
            r
            for r in list(self.requests)
            if r.is_watch and r.path.endswith(f"/{res.plural}") and res.url() in _base(r.path, res)
        ]

    def watching(self, resource: str) -> int:
        """How many watch streams for ``resource`` are open right now."""
        return self.store.watcher_count(self.catalog.resolve(resource))

    def close_watches(self, resource: str | None = None) -> int:
        """End the open watch streams (of one resource or all), as a dropped connection."""
        res = None if resource is None else self.catalog.resolve(resource)
        return self.store.close_watches(res)

    def compact(self) -> int:
        """Forget the change history: watches resuming from an older resourceVersion get 410."""
        return self.store.compact()

    @property
    def resource_version(self) -> int:
        return self.store.resource_version

    async def wait_for(
        self,
        predicate: Callable[[], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 (the name is fixed in INTERFACES.md)
    ) -> None:
        """Poll ``predicate`` until it is true; TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s: {predicate!r}")
            await asyncio.sleep(0.01)

    def wait_for_sync(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """``wait_for`` for threads and synchronous tests."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s: {predicate!r}")
            time.sleep(0.01)

    # --- test-side object access (same effects and events as API calls) ------------------

    def resource(self, name: str) -> Resource:
        return self.catalog.resolve(name)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Store ``obj`` (a full object with apiVersion and kind; namespaced kinds default to
        the ``default`` namespace, which is created when missing). Raises ApiError as the API
        would (409, 422, ...)."""
        res = self._resource_of(obj)
        namespace = (obj.get("metadata") or {}).get("namespace") or "default"
        if res.namespaced and not self.store.has_namespace(namespace):
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        return self.store.create(
            res, namespace if res.namespaced else None, obj, require_namespace=False
        )

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The object, or None. ``namespace=None`` on a namespaced kind finds the one object
        of that name in any namespace (ValueError if there are several)."""
        res = self.catalog.resolve(resource)
        found = self._locate(res, name, namespace)
        if found is False:
            return None
        return self.store.get(res, found, name)  # type: ignore[arg-type]

    def list(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        items, _ = self.store.list(self.catalog.resolve(resource), namespace)
        return items

    def patch(
        self,
        resource: str,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        *,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """JSON merge patch (RFC 7386), as ``kubectl patch --type merge``. The main resource
        ignores ``status`` where the kind has a status subresource (BaseModel, Node): pass
        ``subresource="status"`` to change it."""
        res = self.catalog.resolve(resource)
        found = self._require(res, name, namespace)
        return self.store.patch(res, found, name, "merge", dict(patch), subresource=subresource)

    def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """PUT semantics: ``obj`` replaces the stored object (409 on a stale resourceVersion)."""
        res = self._resource_of(obj)
        meta = obj.get("metadata") or {}
        found = self._require(res, meta["name"], meta.get("namespace"))
        return self.store.replace(res, found, meta["name"], obj)

    def delete(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """Delete (or mark deleted, when it has finalizers); returns the last state."""
        res = self.catalog.resolve(resource)
        found = self._require(res, name, namespace)
        obj, _ = self.store.delete(res, found, name)
        return obj

    def add_node(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A Ready node with the labels a kubelet sets (hostname, os, arch) plus ``labels``."""
        return self.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        **(labels or {}),
                    },
                },
                "spec": {},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "addresses": [{"type": "Hostname", "address": name}],
                    "nodeInfo": {
                        "architecture": "amd64",
                        "bootID": f"boot-{name}",
                        "containerRuntimeVersion": "containerd://1.7.0",
                        "kernelVersion": "6.1.0",
                        "kubeProxyVersion": "v1.31.0",
                        "kubeletVersion": "v1.31.0",
                        "machineID": f"machine-{name}",
                        "operatingSystem": "linux",
                        "osImage": "Fake Linux",
                        "systemUUID": f"uuid-{name}",
                    },
                },
            }
        )

    def _resource_of(self, obj: Mapping[str, Any]) -> Resource:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        for res in self.catalog.resources:
            if res.api_version == api_version and res.kind == kind:
                return res
        raise KeyError(f"no resource serves apiVersion={api_version!r} kind={kind!r}")

    def _locate(self, res: Resource, name: str, namespace: str | None) -> str | bool | None:
        """The namespace the object lives in (None for cluster-scoped); False: not found."""
        if not res.namespaced:
            try:
                self.store.get(res, None, name)
            except ApiError:
                return False
            return None
        if namespace is not None:
            try:
                self.store.get(res, namespace, name)
            except ApiError:
                return False
            return namespace
        items, _ = self.store.list(res, None, fields=f"metadata.name={name}")
        if len(items) > 1:
            spaces = sorted(i["metadata"]["namespace"] for i in items)
            raise ValueError(f"{res.plural} {name!r} exists in several namespaces: {spaces}")
        return items[0]["metadata"]["namespace"] if items else False

    def _require(self, res: Resource, name: str, namespace: str | None) -> str | None:
        found = self._locate(res, name, namespace)
        if found is False:
            raise ApiError(404, "NotFound", f'{res.qualified} "{name}" not found')
        return found  # type: ignore[return-value]


def _base(path: str, res: Resource) -> str:
    """The path with any ``/namespaces/{ns}`` segment removed (for matching a resource)."""
    parts = path.split("/")
    if res.namespaced and "namespaces" in parts:
        i = parts.index("namespaces")
        if i + 2 < len(parts) and parts[i + 2] == res.plural:
            del parts[i : i + 2]
    return "/".join(parts)


def _close_quietly(loop: asyncio.AbstractEventLoop) -> None:
    """Close the fake's loop and collect what it leaves: a client that vanished in the middle
    of a TLS handshake or shutdown (a killed agent) leaves a server-side transport no
    handler tracks, and its ResourceWarning would surface later, in whichever test happens
    to trigger a garbage collection. Those transports are the fake's own, never the code
    under test's: they are collected here, their warnings ignored."""
    gc.collect()  # garbage from elsewhere first, with its warnings as usual
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        loop.close()
        gc.collect()

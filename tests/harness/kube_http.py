"""The HTTP face of the fake Kubernetes API: URL parsing (namespaced, cluster-scoped and
subresource paths, ``/api/v1/namespaces/{name}`` included), verbs, content types, discovery,
list pagination and watch streams. State lives in ``kube_store.Store``; this module only
translates requests into store calls and answers the way a real API server does.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
from typing import Any

import yaml
from aiohttp import web

from tests.harness import kube_apply, kube_openapi, kube_patch, kube_schema, kube_table
from tests.harness.kube_resources import Catalog, Resource
from tests.harness.kube_store import Store, Watcher

MAX_BODY_BYTES = 3 * 1024 * 1024
_JSON_TYPES = ("application/json", "application/yaml")
_PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
}


@dataclasses.dataclass(frozen=True)
class Target:
    """What a resource URL names."""

    resource: Resource
    namespace: str | None
    name: str | None
    subresource: str | None


def _not_found(path: str) -> kube_patch.ApiError:
    return kube_patch.ApiError(
        404, "NotFound", f"the server could not find the requested resource ({path})"
    )


def parse_path(catalog: Catalog, path: str) -> Target | None:
    """The resource target of ``path``, or None for a non-resource (discovery) path.
    Raises a 404 ApiError for a resource path that names nothing served."""
    parts = [p for p in path.split("/") if p != ""]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    if len(rest) >= 3 and rest[0] == "namespaces":
        scoped = catalog.by_url(group, version, rest[2])
        if scoped is not None and scoped.namespaced:
            if len(rest) > 5:
                raise _not_found(path)
            return Target(
                scoped,
                rest[1],
                rest[3] if len(rest) > 3 else None,
                rest[4] if len(rest) > 4 else None,
            )
    resource = catalog.by_url(group, version, rest[0])
    if resource is None or len(rest) > 3 or (resource.namespaced and len(rest) > 1):
        raise _not_found(path)
    return Target(
        resource, None, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    )


def _number(query: dict[str, str], name: str) -> float | None:
    """A non-negative numeric query parameter, or None; 400 for anything else."""
    if not query.get(name):
        return None
    try:
        value = float(query[name])
    except ValueError:
        raise kube_patch.bad_request(f"invalid {name}: {query[name]!r}") from None
    if value < 0:
        raise kube_patch.bad_request(f"invalid {name}: must not be negative")
    return value


def is_true(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def verb_of(method: str, target: Target, query: dict[str, str]) -> str:
    method = method.upper()
    if target.name is None:
        if method == "GET":
            return "watch" if is_true(query.get("watch")) else "list"
        return {"POST": "create", "DELETE": "deletecollection"}.get(method, "unsupported")
    return {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, "unsupported"
    )


def content_type(request: web.Request) -> str | None:
    raw = request.headers.get("Content-Type")
    return raw.split(";")[0].strip().lower() if raw else None


async def read_body(request: web.Request, *, allowed: tuple[str, ...]) -> Any:
    mime = content_type(request)
    if mime not in allowed:
        raise kube_patch.ApiError(
            415,
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(allowed)}",
        )
    raw = await request.read()
    try:
        if mime == "application/yaml":
            return yaml.safe_load(raw)
        return json.loads(raw) if raw else None
    except (ValueError, yaml.YAMLError) as exc:
        raise kube_patch.bad_request(f"invalid body: {exc}") from None


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def error_response(exc: kube_patch.ApiError, retry_after: float | None = None) -> web.Response:
    response = json_response(exc.body(), exc.status)
    if retry_after is not None:
        seconds = float(retry_after)
        response.headers["Retry-After"] = str(int(seconds) if seconds.is_integer() else seconds)
    return response


class Api:
    """Serves one ``Store`` over HTTP. ``loop`` is the server loop (watch delivery)."""

    def __init__(self, store: Store, catalog: Catalog) -> None:
        self.store, self.catalog = store, catalog
        self._openapi: dict[str, Any] = {}
        #: Seconds between the BOOKMARK events of a watch that asked for them
        #: (``allowWatchBookmarks``); a real API server sends one about every minute.
        self.bookmark_interval = 60.0

    # --- discovery -----------------------------------------------------------------------

    def discovery(self, path: str) -> dict[str, Any]:
        parts = [p for p in path.split("/") if p]
        doc: dict[str, Any] | None = None
        if not parts:
            doc = {"paths": self.catalog.paths()}
        elif parts == ["version"]:
            doc = {
                "major": "1",
                "minor": "31",
                "gitVersion": "v1.31.0-fake",
                "platform": "linux/amd64",
            }
        elif parts in (["healthz"], ["readyz"], ["livez"]):
            doc = {"status": "ok"}
        elif parts == ["api"]:
            doc = self.catalog.api_versions()
        elif parts == ["apis"]:
            doc = self.catalog.api_group_list()
        elif len(parts) == 2 and parts[0] == "api":
            doc = self.catalog.resource_list("", parts[1])
        elif len(parts) == 2 and parts[0] == "apis":
            doc = self.catalog.api_group(parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            doc = self.catalog.resource_list(parts[1], parts[2])
        elif parts[:2] == ["openapi", "v3"]:
            doc = self._openapi_document(parts[2:])
        if doc is None:
            raise _not_found(path)
        return doc

    def _openapi_document(self, rest: list[str]) -> dict[str, Any] | None:
        key = "/".join(rest)
        if key not in self._openapi:
            if not rest:
                self._openapi[key] = kube_openapi.index(self.catalog)
            elif len(rest) == 2 and rest[0] == "api":
                self._openapi[key] = kube_openapi.document(self.catalog, "", rest[1])
            elif len(rest) == 3 and rest[0] == "apis":
                self._openapi[key] = kube_openapi.document(self.catalog, rest[1], rest[2])
            else:
                return None
        doc: dict[str, Any] | None = self._openapi[key]
        return doc

    # --- resources -----------------------------------------------------------------------

    async def serve(self, request: web.Request, target: Target, verb: str) -> web.StreamResponse:
        query = dict(request.query)
        store, res = self.store, target.resource
        if target.subresource is not None and (
            target.subresource not in res.subresources or verb not in ("get", "update", "patch")
        ):
            raise _not_found(request.path)
        manager = query.get("fieldManager") or kube_apply.manager_from_user_agent(
            request.headers.get("User-Agent")
        )
        dry_run = bool(query.get("dryRun"))
        as_table = kube_table.wants_table(request.headers.get("Accept"))
        if verb == "get":
            found = store.get(res, target.namespace, target.name or "")
            if as_table and target.subresource is None:
                return json_response(self._table(res, [found], found["metadata"], query))
            return json_response(found)
        if verb == "list":
            listed = self._list(target, query)
            if as_table:
                return json_response(self._table(res, listed["items"], listed["metadata"], query))
            return json_response(listed)
        if verb == "watch":
            return await self._watch(request, target, query)
        if verb == "create":
            body = await read_body(request, allowed=_JSON_TYPES)
            _check_fields(res, body, query)
            created = store.create(res, target.namespace, body, dry_run=dry_run, manager=manager)
            return json_response(created, 201)
        if verb == "update":
            body = await read_body(request, allowed=_JSON_TYPES)
            _check_fields(res, body, query)
            return json_response(
                store.replace(
                    res,
                    target.namespace,
                    target.name or "",
                    body,
                    subresource=target.subresource,
                    manager=manager,
                    dry_run=dry_run,
                )
            )
        if verb == "patch":
            return await self._patch(request, target, query, manager)
        if verb == "delete":
            return self._delete(target, await self._delete_options(request))
        if verb == "deletecollection":
            items, _ = store.list(
                res, target.namespace, query.get("labelSelector"), query.get("fieldSelector")
            )
            for item in items:
                with contextlib.suppress(kube_patch.ApiError):
                    store.delete(res, item["metadata"].get("namespace"), item["metadata"]["name"])
            return json_response(kube_patch.status_body(200, "", "deleted"))
        raise kube_patch.ApiError(
            405, "MethodNotAllowed", f"{request.method} is not supported on {request.path}"
        )

    def _list(self, target: Target, query: dict[str, str]) -> dict[str, Any]:
        res = target.resource
        items, rv = self.store.list(
            res, target.namespace, query.get("labelSelector"), query.get("fieldSelector")
        )
        start = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                start, rv = int(token["offset"]), int(token["rv"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise kube_patch.bad_request("invalid continue token") from None
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(_number(query, "limit") or 0)
        page = items[start:]
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            token = json.dumps({"offset": start + limit, "rv": rv}).encode()
            meta["continue"] = base64.urlsafe_b64encode(token).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        return {
            "kind": f"{res.kind}List",
            "apiVersion": res.api_version,
            "metadata": meta,
            "items": page,
        }

    @staticmethod
    def _wants_table(request: web.Request) -> bool:
        return kube_table.wants_table(request.headers.get("Accept"))

    def _table(
        self,
        res: Resource,
        items: list[dict[str, Any]],
        metadata: dict[str, Any],
        query: dict[str, str],
    ) -> dict[str, Any]:
        meta = {k: v for k, v in metadata.items() if k in ("resourceVersion", "continue")}
        include = query.get("includeObject") or "Metadata"
        if include not in ("None", "Metadata", "Object"):
            raise kube_patch.bad_request(f"invalid includeObject: {include!r}")
        return kube_table.table(res, items, metadata=meta, include=include)

    async def _patch(
        self, request: web.Request, target: Target, query: dict[str, str], manager: str
    ) -> web.Response:
        mime = content_type(request)
        patch_type = _PATCH_TYPES.get(mime or "")
        if patch_type == "apply":
            return await self._apply(request, target, query)
        if patch_type is None or (patch_type == "strategic" and not target.resource.builtin):
            accepted = [
                t
                for t, kind in _PATCH_TYPES.items()
                if target.resource.builtin or kind != "strategic"
            ]
            raise kube_patch.ApiError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {', '.join(accepted)}",
            )
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise kube_patch.bad_request(f"invalid patch body: {exc}") from None
        if patch_type == "merge":
            _check_fields(target.resource, body, query)
        patched = self.store.patch(
            target.resource,
            target.namespace,
            target.name or "",
            patch_type,
            body,
            subresource=target.subresource,
            manager=manager,
            dry_run=bool(query.get("dryRun")),
        )
        return json_response(patched)

    async def _apply(
        self, request: web.Request, target: Target, query: dict[str, str]
    ) -> web.Response:
        """Server-side apply (``kube_apply``): 201 when it created the object."""
        manager = query.get("fieldManager")
        if not manager:
            raise kube_patch.bad_request(
                "PATCH requests with apply content type require fieldManager"
            )
        force = query.get("force")
        if force not in (None, "true", "false"):
            raise kube_patch.bad_request(f"invalid force: {force!r}")
        try:
            config = yaml.safe_load(await request.read())
        except yaml.YAMLError as exc:
            raise kube_patch.bad_request(f"invalid apply body: {exc}") from None
        _check_fields(target.resource, config, query)
        obj, created = self.store.apply(
            target.resource,
            target.namespace,
            target.name or "",
            config,
            manager=manager,
            force=force == "true",
            subresource=target.subresource,
            dry_run=bool(query.get("dryRun")),
        )
        return json_response(obj, 201 if created else 200)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw:
            return {}
        try:
            options = json.loads(raw)
        except ValueError as exc:
            raise kube_patch.bad_request(f"invalid DeleteOptions: {exc}") from None
        return options if isinstance(options, dict) else {}

    def _delete(self, target: Target, options: dict[str, Any]) -> web.Response:
        res = target.resource
        obj, gone = self.store.delete(
            res, target.namespace, target.name or "", preconditions=options.get("preconditions")
        )
        if not gone:
            return json_response(obj, 200)
        if res.builtin and res.plural != "namespaces":
            details = {
                "name": obj["metadata"]["name"],
                "kind": res.plural,
                "uid": obj["metadata"]["uid"],
            }
            return json_response(
                kube_patch.status_body(200, "", "", details) | {"status": "Success"}
            )
        return json_response(obj, 200)

    async def _watch(
        self, request: web.Request, target: Target, query: dict[str, str]
    ) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def deliver(event: dict[str, Any] | None) -> None:
            with contextlib.suppress(RuntimeError):  # the server loop is already closed
                loop.call_soon_threadsafe(queue.put_nowait, event)

        watcher = Watcher(
            resource=target.resource,
            namespace=target.namespace,
            labels=kube_patch.label_matcher(query.get("labelSelector")),
            fields=kube_patch.field_matcher(query.get("fieldSelector")),
            deliver=deliver,
        )
        initial = self.store.watch(
            watcher,
            since=query.get("resourceVersion"),
            initial_events=is_true(query.get("sendInitialEvents")),
        )
        timeout = _number(query, "timeoutSeconds")
        deadline = None if timeout is None else loop.time() + timeout
        tables = _TableEvents(target.resource, query) if self._wants_table(request) else None
        bookmarks = is_true(query.get("allowWatchBookmarks"))
        next_bookmark = loop.time() + self.bookmark_interval
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        try:
            await response.prepare(request)
            for first in initial:
                await _write_event(response, first, tables)
                if first["type"] == "ERROR":
                    return response
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    break
                wait = remaining
                if bookmarks:
                    until_bookmark = max(0.0, next_bookmark - loop.time())
                    wait = until_bookmark if wait is None else min(wait, until_bookmark)
                try:
                    event = await asyncio.wait_for(queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() >= next_bookmark:
                        next_bookmark = loop.time() + self.bookmark_interval
                        if not await self._bookmark(response, target, queue, tables):
                            break
                    continue
                if event is None:
                    break
                await _write_event(response, event, tables)
            self.store.unwatch(watcher)  # before the client can see the end of the stream
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except ConnectionError:
            pass
        finally:
            self.store.unwatch(watcher)
        return response

    async def _bookmark(
        self,
        response: web.StreamResponse,
        target: Target,
        queue: asyncio.Queue[dict[str, Any] | None],
        tables: _TableEvents | None,
    ) -> bool:
        """Write a BOOKMARK with the store's resourceVersion, after every event up to that
        version (delivery is scheduled under the store lock, so one loop turn queues them
        all). False when the stream was closed meanwhile."""
        version = self.store.resource_version
        await asyncio.sleep(0)
        while not queue.empty():
            event = queue.get_nowait()
            if event is None:
                return False
            await _write_event(response, event, tables)
        res = target.resource
        meta = {"resourceVersion": str(version)}
        mark = {"apiVersion": res.api_version, "kind": res.kind, "metadata": meta}
        await _write_event(response, {"type": "BOOKMARK", "object": mark})
        return True


def _check_fields(res: Resource, body: Any, query: dict[str, str]) -> None:
    """``fieldValidation=Strict``: a body with a field the kind's schema does not declare is
    a 400 naming the field (``Ignore``/``Warn``, the default: the server prunes it)."""
    schema = kube_schema.schema_of(res)
    if query.get("fieldValidation") != "Strict" or schema is None or not isinstance(body, dict):
        return
    unknown = kube_schema.unknown_fields(body, schema)
    if unknown:
        listed = ", ".join(f'unknown field "{field}"' for field in unknown)
        raise kube_patch.bad_request(
            f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}: '
            f"strict decoding error: {listed}"
        )


class _TableEvents:
    """A watch for Tables (``kubectl get -w``): each object becomes a one-row Table; only
    the first carries the column definitions, as on a real server."""

    def __init__(self, resource: Resource, query: dict[str, str]) -> None:
        self.resource, self.headers = resource, True
        self.include = query.get("includeObject") or "Metadata"

    def convert(self, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("type") in ("ERROR", "BOOKMARK"):
            return event
        obj = event["object"]
        meta = {"resourceVersion": obj.get("metadata", {}).get("resourceVersion", "")}
        table = kube_table.table(
            self.resource, [obj], metadata=meta, include=self.include, headers=self.headers
        )
        self.headers = False
        return {"type": event["type"], "object": table}


async def _write_event(
    response: web.StreamResponse, event: dict[str, Any], tables: _TableEvents | None = None
) -> None:
    if tables is not None:
        event = tables.convert(event)
    await response.write(json.dumps(event).encode() + b"\n")

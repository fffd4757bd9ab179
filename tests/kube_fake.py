"""A fake Kubernetes API server for custom objects, on loopback, for the official client to call.

It implements just the API machinery the Kubernetes backend meets in a cluster: replaces checked
against `metadata.resourceVersion` (a stale one gets kube-apiserver's 409 Status), `generateName`,
label-selector lists ordered by name, JSON merge patches, the status subresource, and Status
bodies shaped like the real server's. Every request is recorded, and answers can be scripted.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "INFERENCE_SERVICES",
    "WORKFLOWS",
    "FakeKube",
    "Request",
    "Resource",
    "fake_kube",
    "forbidden",
    "missing_crd",
    "status_body",
]

_PATH = re.compile(
    r"/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
    r"(?:/(?P<name>[^/]+))?"
)
# kube-apiserver's generateName suffix alphabet: no vowels, so no words; no 0/1/3 look-alikes.
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


@dataclass(frozen=True)
class Resource:
    """A custom resource type the fake serves."""

    group: str
    version: str
    plural: str
    kind: str
    status_subresource: bool
    """Whether writes to the main resource leave `status` alone (as with KServe's CRD)."""

    def path(self, namespace: str, name: str | None = None) -> str:
        """The API path of the collection, or of one object when `name` is given."""
        base = f"/apis/{self.group}/{self.version}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{name}" if name else base


INFERENCE_SERVICES = Resource(
    "serving.kserve.io", "v1beta1", "inferenceservices", "InferenceService", True
)
WORKFLOWS = Resource("argoproj.io", "v1alpha1", "workflows", "Workflow", False)


@dataclass(frozen=True)
class Request:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any


@dataclass
class _Script:
    method: str | None
    path: str
    body: dict[str, Any]
    times: int | None


@dataclass
class _Hook:
    method: str
    path: str
    run: Callable[[], None]
    times: int | None


def status_body(
    code: int, reason: str, message: str, details: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A failure `Status` as kube-apiserver sends it."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details or {},
        "code": code,
    }


def missing_crd() -> dict[str, Any]:
    """The 404 the API server answers for a group/resource no installed CRD serves."""
    return status_body(404, "NotFound", "the server could not find the requested resource")


def forbidden(
    resource: Resource,
    verb: str,
    namespace: str,
    name: str | None = None,
    user: str = "system:serviceaccount:loopstack:loopstack",
) -> dict[str, Any]:
    """The 403 RBAC answers when `user` may not `verb` the resource in `namespace`."""
    what = f"{resource.plural}.{resource.group}" + (f' "{name}"' if name else "")
    message = (
        f'{what} is forbidden: User "{user}" cannot {verb} resource "{resource.plural}" in API '
        f'group "{resource.group}" in the namespace "{namespace}"'
    )
    details = {"group": resource.group, "kind": resource.plural, **({"name": name} if name else {})}
    return status_body(403, "Forbidden", message, details)


def _merge_patch(target: Any, patch: Any) -> Any:
    # RFC 7386: objects merge key by key, null deletes, anything else replaces.
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    merged = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _merge_patch(merged.get(key), value)
    return merged


def _selects(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeKube:
    """In-memory custom objects behind a threaded HTTP server on loopback."""

    def __init__(self, resources: tuple[Resource, ...] = (INFERENCE_SERVICES, WORKFLOWS)) -> None:
        self._resources = {(r.group, r.version, r.plural): r for r in resources}
        self._objects: dict[tuple[Resource, str, str], dict[str, Any]] = {}
        self._resource_version = 1000
        # Re-entrant: an interleaved writer runs while the request that triggered it holds it.
        self._lock = threading.RLock()
        self._requests: list[Request] = []
        self._scripts: list[_Script] = []
        self._hooks: list[_Hook] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        # A short poll, so shutdown() returns at once rather than after the default 0.5 s.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- what tests use -------------------------------------------------------------------
    @property
    def requests(self) -> list[Request]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def requests_for(self, method: str, path: str) -> list[Request]:
        """The requests with this method to exactly this path."""
        return [r for r in self.requests if r.method == method and r.path == path]

    def get(self, resource: Resource, namespace: str, name: str) -> dict[str, Any]:
        """A copy of the stored object."""
        with self._lock:
            return copy.deepcopy(self._objects[(resource, namespace, name)])

    def names(self, resource: Resource, namespace: str) -> list[str]:
        """Names of the stored objects of `resource` in `namespace`, sorted."""
        with self._lock:
            return sorted(n for r, ns, n in self._objects if r == resource and ns == namespace)

    def create(self, resource: Resource, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        """A create by someone else: stored as the API would store it (name, version)."""
        with self._lock:
            code, stored = self._create(resource, namespace, copy.deepcopy(obj))
            assert code == 201, stored
            return stored

    def update(
        self,
        resource: Resource,
        namespace: str,
        name: str,
        change: Callable[[dict[str, Any]], None],
    ) -> dict[str, Any]:
        """A write by someone else (a controller, another client): status included, new version."""
        with self._lock:
            obj = self._objects[(resource, namespace, name)]
            change(obj)
            self._bump(obj)
            return copy.deepcopy(obj)

    def script(
        self, path: str, body: dict[str, Any], method: str | None = None, times: int | None = None
    ) -> None:
        """Answer requests under `path` (any method, or `method`) with `body` and its code."""
        with self._lock:
            self._scripts.append(_Script(method, path, body, times))

    def interleave(
        self, method: str, path: str, run: Callable[[], None], times: int | None = 1
    ) -> None:
        """Run `run` after the answer to a matching request is taken, before it is sent.

        This is another writer committing between the client's read and its next request.
        """
        with self._lock:
            self._hooks.append(_Hook(method, path, run, times))

    # --- the API ------------------------------------------------------------------------------
    def handle(self, method: str, target: str, content_type: str, raw: bytes) -> tuple[int, bytes]:
        """Answer one request: status code and JSON body."""
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        body = json.loads(raw) if raw else None
        with self._lock:
            # A copy: serving the request fills in metadata, and the record is what was sent.
            sent = copy.deepcopy(body)
            self._requests.append(Request(method, parts.path, query, content_type, sent))
            scripted = self._scripted(method, parts.path)
            if scripted is not None:
                return scripted["code"], json.dumps(scripted).encode()
            code, answer = self._serve(method, parts.path, query, content_type, body)
            encoded = json.dumps(answer).encode()  # before a hook changes the stored object
            for hook in [h for h in self._hooks if (h.method, h.path) == (method, parts.path)]:
                if hook.times is not None:
                    hook.times -= 1
                    if hook.times == 0:
                        self._hooks.remove(hook)
                hook.run()
            return code, encoded

    def _scripted(self, method: str, path: str) -> dict[str, Any] | None:
        for script in self._scripts:
            if path.startswith(script.path) and script.method in (None, method):
                if script.times is not None:
                    script.times -= 1
                    if script.times == 0:
                        self._scripts.remove(script)
                return script.body
        return None

    def _serve(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        match = _PATH.fullmatch(path)
        if match is None:
            return 404, missing_crd()
        group, version, plural = match.group("group", "version", "plural")
        resource = self._resources.get((group, version, plural))
        if resource is None:  # no CRD serves it: what the real server says then
            return 404, missing_crd()
        namespace, name = match.group("ns"), match.group("name")
        if name is None and method == "GET":
            return self._list(resource, namespace, query.get("labelSelector", ""))
        if name is None and method == "POST":
            return self._create(resource, namespace, body)
        if name is not None and method in ("GET", "PUT", "PATCH"):
            current = self._objects.get((resource, namespace, name))
            if current is None:
                message = f'{resource.plural}.{resource.group} "{name}" not found'
                details = {"name": name, "group": resource.group, "kind": resource.plural}
                return 404, status_body(404, "NotFound", message, details)
            if method == "GET":
                return 200, current
            if method == "PUT":
                return self._replace(resource, current, name, body)
            return self._patch(resource, current, content_type, body)
        return 405, status_body(405, "MethodNotAllowed", f"{method} is not supported here")

    def _list(
        self, resource: Resource, namespace: str, selector: str
    ) -> tuple[int, dict[str, Any]]:
        # etcd keys end in the name, so a real list comes back ordered by name.
        items = [
            obj
            for (r, ns, _), obj in sorted(self._objects.items(), key=lambda kv: kv[0][2])
            if r == resource and ns == namespace
            if _selects(selector, obj["metadata"].get("labels", {}))
        ]
        return 200, {
            "apiVersion": f"{resource.group}/{resource.version}",
            "kind": f"{resource.kind}List",
            "metadata": {"resourceVersion": str(self._resource_version)},
            "items": items,
        }

    def _create(
        self, resource: Resource, namespace: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        expected = f"{resource.group}/{resource.version}"
        if body.get("apiVersion") != expected or body.get("kind") != resource.kind:
            message = f"the API version/kind in the data ({body.get('apiVersion')}, {body.get('kind')}) does not match the expected ({expected}, {resource.kind})"
            return 400, status_body(400, "BadRequest", message)
        meta = body.setdefault("metadata", {})
        if meta.get("namespace", namespace) != namespace:
            message = "the namespace of the provided object does not match the namespace sent on the request"
            return 400, status_body(400, "BadRequest", message)
        if meta.get("resourceVersion"):
            message = "resourceVersion should not be set on objects to be created"
            return 500, status_body(500, "InternalError", message)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + "".join(
                secrets.choice(_SUFFIX_ALPHABET) for _ in range(5)
            )
        if not name:
            message = f"{resource.kind} is invalid: metadata.name: Required value: name or generateName is required"
            return 422, status_body(422, "Invalid", message)
        if (resource, namespace, name) in self._objects:
            message = f'{resource.plural}.{resource.group} "{name}" already exists'
            details = {"name": name, "group": resource.group, "kind": resource.plural}
            return 409, status_body(409, "AlreadyExists", message, details)
        meta.update(
            name=name,
            namespace=namespace,
            uid=secrets.token_hex(16),
            generation=1,
            creationTimestamp=_now(),
        )
        if resource.status_subresource:
            body.pop("status", None)  # only the status subresource writes it
        self._bump(body)
        self._objects[(resource, namespace, name)] = body
        return 201, body

    def _replace(
        self, resource: Resource, current: dict[str, Any], name: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        meta = body.setdefault("metadata", {})
        if meta.get("name", name) != name:
            message = f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            return 400, status_body(400, "BadRequest", message)
        if not meta.get("resourceVersion"):
            # Custom resources refuse unconditional updates.
            message = f'{resource.kind}.{resource.group} "{name}" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update'
            return 422, status_body(422, "Invalid", message)
        if meta["resourceVersion"] != current["metadata"]["resourceVersion"]:
            return 409, self._conflict(resource, name)
        return 200, self._store(resource, current, body)

    def _patch(
        self, resource: Resource, current: dict[str, Any], content_type: str, body: Any
    ) -> tuple[int, dict[str, Any]]:
        if content_type.split(";")[0].strip() != "application/merge-patch+json":
            # Custom resources take no strategic merge patch; JSON patch this fake leaves out.
            message = f"the body of the request was in an unknown format ({content_type}) - accepted media types include: application/merge-patch+json"
            return 415, status_body(415, "UnsupportedMediaType", message)
        name = current["metadata"]["name"]
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            return 409, self._conflict(resource, name)
        return 200, self._store(resource, current, _merge_patch(current, body))

    def _store(
        self, resource: Resource, current: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
        meta = current["metadata"]
        new["metadata"].update(
            uid=meta["uid"],
            creationTimestamp=meta["creationTimestamp"],
            namespace=meta["namespace"],
        )
        new["metadata"]["generation"] = meta["generation"] + (
            new.get("spec") != current.get("spec")
        )
        if resource.status_subresource:
            new.pop("status", None)
            if "status" in current:
                new["status"] = current["status"]
        self._bump(new)
        self._objects[(resource, meta["namespace"], meta["name"])] = new
        return new

    def _bump(self, obj: dict[str, Any]) -> None:
        self._resource_version += 1
        obj["metadata"]["resourceVersion"] = str(self._resource_version)

    @staticmethod
    def _conflict(resource: Resource, name: str) -> dict[str, Any]:
        message = (
            f'Operation cannot be fulfilled on {resource.plural}.{resource.group} "{name}": the '
            "object has been modified; please apply your changes to the latest version and try again"
        )
        details = {"name": name, "group": resource.group, "kind": resource.plural}
        return status_body(409, "Conflict", message, details)


class _Server(ThreadingHTTPServer):
    fake: FakeKube


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        code, payload = self.server.fake.handle(
            self.command, self.path, self.headers.get("Content-Type", ""), raw
        )
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recorded requests are the log; stderr noise would bury test output


@contextmanager
def fake_kube() -> Iterator[FakeKube]:
    """A started fake API server, always shut down on exit."""
    fake = FakeKube()
    fake.start()
    try:
        yield fake
    finally:
        fake.close()

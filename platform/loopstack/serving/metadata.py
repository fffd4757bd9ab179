"""OIP health and metadata answers (server and model), one source for REST and gRPC.

A named model and version are resolved here before any request body is read, so an unknown
model or version is a 404 / NOT_FOUND whatever the body holds; a version the traffic record
names but that failed to load is "not ready", with the reason.
"""

from __future__ import annotations

from typing import Any

from loopstack import __version__
from loopstack.serving.errors import ModelNotReady, ModelNotServed, VersionNotServed
from loopstack.serving.loader import LoadedVersion
from loopstack.serving.readiness import Readiness
from loopstack.serving.runtime import ServingRuntime

__all__ = ["EXTENSIONS", "OIPStatus", "SERVER_NAME"]

SERVER_NAME = "loopstack"
EXTENSIONS = ["binary_tensor_data"]
"""Protocol extensions this server answers: REST tensors as raw bytes after the JSON header
(`Inference-Header-Content-Length`), in requests and answers. Nothing else is listed: KServe's
model repository routes exist but Loopstack loads models from traffic splits, not on request."""


def _by_number(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


class OIPStatus:
    """Readiness and metadata of the server and of its models, from the runtime's served
    splits and the versions that failed to load."""

    def __init__(self, runtime: ServingRuntime, readiness: Readiness) -> None:
        self.runtime = runtime
        self.readiness = readiness

    def server_metadata(self) -> dict[str, Any]:
        """`name`, `version` and the `extensions` that answer."""
        return {"name": SERVER_NAME, "version": __version__, "extensions": list(EXTENSIONS)}

    def server_not_ready(self) -> str | None:
        """Why the server is not ready (starting, a deployed version loading or failed to
        load), or None."""
        return self.readiness.reason()

    def resolve(self, model: str, version: str | None = None) -> LoadedVersion:
        """The served version a request names (the champion without one).

        Raises:
            ModelNotServed: no traffic split names the model (404).
            VersionNotServed: the model's traffic split does not name the version (404).
            ModelNotReady: the model, or the version named, is loading or failed to load (503).
        """
        failure = self.readiness.failure(model)
        loading = self.readiness.loading_of(model)
        served = self.runtime.served(model)
        if version:
            if served is not None and version in served.versions():
                return served.versions()[version]
            if failure is not None and version in failure.failed:
                raise ModelNotReady(model, failure.reason(version))
            if loading is not None and version in loading.roles:
                raise ModelNotReady(model, loading.reason(version))
            if served is not None or failure is not None:
                known = set(served.versions() if served else ()) | set(
                    failure.roles if failure else ()
                )
                raise VersionNotServed(model, version, sorted(known, key=_by_number))
        if served is None and loading is not None:
            raise ModelNotReady(model, loading.reason())
        if served is None and model not in self.runtime.models():
            raise ModelNotServed(model, self.runtime.models())
        return self.runtime.version_of(model)

    def check_ready(self, model: str, version: str | None = None) -> None:
        """Nothing when the model (or the version named) is ready, else why not.

        Without a version, a model is ready when every version its traffic record names is
        loaded: while one loads or fails, its previous split may still answer, but it is not
        what was deployed.

        Raises:
            ModelNotServed, VersionNotServed, ModelNotReady: as `resolve`.
        """
        self.resolve(model, version)
        pending = self.readiness.not_ready(model)
        if not version and pending is not None:
            raise ModelNotReady(model, pending)

    def model_metadata(self, model: str, version: str | None = None) -> dict[str, Any]:
        """OIP model metadata of the champion or of the version named: its tensors, the
        versions that may be named, the platform, and how rows may be sent (`parameters`).

        Raises:
            ModelNotServed, VersionNotServed, ModelNotReady: as `resolve`.
        """
        loaded = self.resolve(model, version)
        served = self.runtime.served(model)
        return {
            "name": model,
            "versions": sorted(served.versions() if served else (), key=_by_number),
            "platform": loaded.platform,
            "inputs": loaded.schema.tensors(),
            "outputs": loaded.output_tensors(),
            "parameters": loaded.schema.input_forms(),
        }

"""`LoopstackModel`: the `kserve.Model` registered per served model name.

KServe's data plane (gRPC servicer, health, ready, metadata endpoints) calls it; it only
translates to the runtime: readiness and tensors come from the traffic split's loaded versions,
inference from `ServingRuntime.score`.
"""

from __future__ import annotations

from typing import Any

from kserve import Model
from kserve.protocol.infer_type import InferRequest

from loopstack.serving.codec import from_infer_request, to_infer_response
from loopstack.serving.errors import BadRequest
from loopstack.serving.runtime import ServingRuntime, correlation_from

__all__ = ["LoopstackModel"]


class LoopstackModel(Model):
    """One served model name; its versions and split live in the runtime."""

    def __init__(self, name: str, runtime: ServingRuntime) -> None:
        super().__init__(name)
        self.runtime = runtime
        self.ready = runtime.ready(name)

    async def healthy(self) -> bool:
        """Ready when a split of the model is loaded."""
        self.ready = self.runtime.ready(self.name)
        return self.ready

    def load(self) -> bool:
        """Loading is the traffic watcher's job; KServe calls this on every not-ready request."""
        self.ready = self.runtime.ready(self.name)
        return self.ready

    def get_input_types(self) -> list[dict[str, Any]]:
        """The champion's signature inputs: one `[-1]` tensor per column."""
        version = self.runtime.signature_version(self.name)
        return version.schema.tensors() if version else []

    def get_output_types(self) -> list[dict[str, Any]]:
        """What the champion answers: `prediction` and, for classifiers, `probabilities`."""
        version = self.runtime.signature_version(self.name)
        return version.output_tensors() if version else []

    async def __call__(
        self, body: Any, headers: dict[str, str] | None = None, verb: Any = None
    ) -> tuple[Any, dict[str, str]]:
        """Score a gRPC `InferRequest` (the REST routes call the runtime directly)."""
        if not isinstance(body, InferRequest):
            raise BadRequest(
                "this runtime takes OIP v2 requests here; use /v1/models/M:predict for v1"
            )
        request = from_infer_request(body, "v2-grpc")
        request.correlation_id, request.traceparent = correlation_from(headers or {})
        result = await self.runtime.score(request)
        requested = [o.name for o in body.request_outputs] if body.request_outputs else None
        answer = to_infer_response(
            result, requested, binary=body.use_binary_outputs, request_id=request.request_id
        )
        return answer, {}

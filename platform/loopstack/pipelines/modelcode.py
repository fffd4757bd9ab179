"""Load a model's training code (`models/<name>/train.py`) from its spec's entrypoint."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from loopstack.core.modelspec import ModelSpec
from loopstack.pipelines.errors import PipelineDefinitionError

__all__ = ["build_estimator", "model_inputs"]


def build_estimator(spec: ModelSpec, params: dict[str, Any]) -> Any:
    """An unfitted estimator from the spec's `training.entrypoint` (`module:function`)."""
    module_name, _, function = spec.training.entrypoint.partition(":")
    assert spec.directory is not None
    path = spec.directory / f"{module_name.replace('.', '/')}.py"
    if not path.is_file() or not function:
        raise PipelineDefinitionError(
            f"model {spec.name!r}: entrypoint {spec.training.entrypoint!r} must be `module:function` "
            f"of a file under {spec.directory}"
        )
    unique = f"loopstack_model_{spec.name.replace('-', '_')}_{module_name}"
    loader_spec = importlib.util.spec_from_file_location(unique, path)
    assert loader_spec is not None and loader_spec.loader is not None
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[unique] = module
    loader_spec.loader.exec_module(module)
    factory = getattr(module, function, None)
    if not callable(factory):
        raise PipelineDefinitionError(
            f"model {spec.name!r}: {path} defines no function {function!r}"
        )
    return factory(params)


def model_inputs(spec: ModelSpec, columns: list[str], timestamp: str) -> list[str]:
    """Columns a model reads: request fields and features, not keys, times or the target."""
    skip = {spec.entity.join_key, spec.target, timestamp, "label_timestamp"}
    return [c for c in columns if c not in skip]

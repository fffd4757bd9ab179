"""Find pipeline definitions: every `pipelines/*.py` that defines `pipeline = Pipeline(...)`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from loopstack.pipelines.dsl import Pipeline
from loopstack.pipelines.errors import PipelineDefinitionError, PipelineNotFound

__all__ = ["load_pipelines", "load_pipeline"]


def _load_file(path: Path) -> Pipeline | None:
    module_name = f"loopstack_pipelines_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    found = getattr(module, "pipeline", None)
    if found is None:
        return None
    if not isinstance(found, Pipeline):
        raise PipelineDefinitionError(f"{path}: `pipeline` is not a loopstack Pipeline")
    return found


def load_pipelines(pipelines_dir: Path) -> dict[str, Pipeline]:
    """Every pipeline defined under `pipelines_dir`, by name."""
    found: dict[str, Pipeline] = {}
    for path in sorted(pipelines_dir.glob("*.py")):
        if path.name.startswith("_"):
            continue
        pipeline = _load_file(path)
        if pipeline is not None:
            found[pipeline.name] = pipeline
    return found


def load_pipeline(pipelines_dir: Path, name: str) -> Pipeline:
    """One pipeline by name."""
    found = load_pipelines(pipelines_dir)
    if name not in found:
        raise PipelineNotFound(name, sorted(found))
    return found[name]

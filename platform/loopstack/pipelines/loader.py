"""Find pipeline definitions: every `*.py` that defines `pipeline = Pipeline(...)`, in the
project's `pipelines/` folder and among the built-in pipelines the package ships.

A project's pipeline overrides a built-in one of the same name (and a project file shadows the
built-in file of the same file name), so a project needs no `pipelines/` folder at all.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from loopstack.core.bundled import BUILTIN_PIPELINES
from loopstack.pipelines.dsl import Pipeline
from loopstack.pipelines.errors import PipelineDefinitionError, PipelineNotFound

__all__ = ["load_pipelines", "load_pipeline"]


def _load_file(path: Path, prefix: str) -> Pipeline | None:
    module_name = f"{prefix}_{path.stem}"
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


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]


def _load_folder(folder: Path, prefix: str, skip: set[str]) -> dict[str, Pipeline]:
    found: dict[str, Pipeline] = {}
    for path in _files(folder):
        if path.name in skip:
            continue
        pipeline = _load_file(path, prefix)
        if pipeline is not None:
            found[pipeline.name] = pipeline
    return found


def _project(pipelines_dir: Path) -> dict[str, Pipeline]:
    return _load_folder(pipelines_dir, "loopstack_pipelines", set())


def _builtin(pipelines_dir: Path) -> dict[str, Pipeline]:
    # The checkout's own `pipelines/` is the source of the built-in files: load it once.
    if pipelines_dir.is_dir() and pipelines_dir.resolve() == _source_of(BUILTIN_PIPELINES):
        return {}
    shadowed = {p.name for p in _files(pipelines_dir)}
    return _load_folder(BUILTIN_PIPELINES, "loopstack_builtin_pipelines", shadowed)


def _source_of(folder: Path) -> Path | None:
    """The folder the built-in files link to (a checkout), else None (an installed wheel)."""
    files = _files(folder)
    return files[0].resolve().parent if files and files[0].is_symlink() else None


def load_pipelines(pipelines_dir: Path) -> dict[str, Pipeline]:
    """Every pipeline: the built-in ones, then those under `pipelines_dir`, which override by name."""
    return {**_builtin(pipelines_dir), **_project(pipelines_dir)}


def load_pipeline(pipelines_dir: Path, name: str) -> Pipeline:
    """One pipeline by name: the project's if it defines it, else the built-in one."""
    found = _project(pipelines_dir)
    if name not in found:
        found = {**_builtin(pipelines_dir), **found}
    if name not in found:
        raise PipelineNotFound(name, sorted(found))
    return found[name]

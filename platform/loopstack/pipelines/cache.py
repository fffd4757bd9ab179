"""The step cache: a step's outputs keyed by its code, parameters, branch and inputs."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from pathlib import Path

from loopstack.pipelines.plan import Task

__all__ = ["StepCache"]


def _hash_tree(folder: Path, digest: hashlib._Hash) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())


def _code_of(task: Task) -> bytes:
    """The step function's source and its module's whole file: editing either misses the cache."""
    fn = task.step.fn
    parts = [inspect.getsource(fn)]
    module_file = inspect.getsourcefile(fn)
    if module_file:
        parts.append(Path(module_file).read_text())
    return "\n".join(parts).encode()


class StepCache:
    """Outputs of cacheable steps, stored by key under the state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key(self, task: Task, params: dict[str, str], input_dirs: list[Path]) -> str:
        """Cache key of a task given the output folders of the steps it depends on."""
        digest = hashlib.sha256()
        digest.update(_code_of(task))
        digest.update(json.dumps(params, sort_keys=True).encode())
        digest.update(str(task.branch).encode())
        for folder in input_dirs:
            digest.update(str(folder.name).encode())
            if folder.is_dir():
                _hash_tree(folder, digest)
        return digest.hexdigest()

    def restore(self, key: str, out_dir: Path) -> bool:
        """Copy cached outputs into `out_dir`; False on a miss."""
        cached = self.root / key
        if not (cached / ".complete").is_file():
            return False
        if out_dir.exists():
            shutil.rmtree(out_dir)
        shutil.copytree(cached, out_dir, ignore=shutil.ignore_patterns(".complete"))
        return True

    def store(self, key: str, out_dir: Path) -> None:
        """Save a finished task's outputs under its key (atomically, via a temp folder)."""
        target = self.root / key
        if (target / ".complete").is_file() or not out_dir.is_dir():
            return
        tmp = self.root / f".{key}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(out_dir, tmp)
        (tmp / ".complete").touch()
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)

"""The package carries what a process needs outside a checkout, and a project needs no more.

Fast checks of the wheel's contents, the built-in pipelines, `loopstack init` and the lineage's
word on git; `test_wheel.py` runs the whole thing from an installed wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from loopstack.cli.init import scaffold
from loopstack.core.bundled import BUILTIN_PIPELINES, DRIFT_RUNTIME_SOURCE
from loopstack.core.errors import InvalidInput
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.pipelines.loader import load_pipeline, load_pipelines
from loopstack.pipelines.registration import git_sha

from tests.conftest import PROJECT_DIR

UV = shutil.which("uv") or str(PROJECT_DIR / ".tools" / "uv" / "bin" / "uv")
DRIFT_DIR = PROJECT_DIR / "platform" / "drift-runtime"


def build_wheel(out: Path) -> Path:
    """`uv build --wheel` of the checkout (uv's own backend: well under a second, offline)."""
    subprocess.run([UV, "build", "--wheel", "--out-dir", str(out), str(PROJECT_DIR)],
                   check=True, capture_output=True)  # fmt: skip
    (wheel,) = out.glob("loopstack-*.whl")
    return wheel


def test_every_pipeline_and_drift_runtime_file_is_bundled_from_its_source() -> None:
    expected = {
        **{BUILTIN_PIPELINES / p.name: p for p in (PROJECT_DIR / "pipelines").glob("*.py")},
        **{
            DRIFT_RUNTIME_SOURCE / "src" / "loopstack_drift" / p.name: p
            for p in (DRIFT_DIR / "src" / "loopstack_drift").glob("*.py")
        },
    }
    for link, source in expected.items():
        assert link.is_symlink() and link.resolve() == source.resolve(), (
            f"{link} does not link to {source}: run `make bundle`"
        )
    bundled = {*BUILTIN_PIPELINES.glob("*.py"), *DRIFT_RUNTIME_SOURCE.glob("src/*/*.py")}
    assert bundled == set(expected), "stale links in platform/loopstack/bundled: `make bundle`"


def test_the_drift_requirements_are_the_lock_exported() -> None:
    exported = subprocess.run(
        [UV, "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--quiet"],
        cwd=DRIFT_DIR, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    shipped = (DRIFT_RUNTIME_SOURCE / "requirements.txt").read_text()
    assert shipped == exported, "requirements.txt is out of date with uv.lock: `make bundle`"
    assert "alibi-detect==0.11.4" in shipped


def test_the_wheel_holds_pipelines_drift_runtime_scaffold_and_schemas(tmp_path: Path) -> None:
    names = set(zipfile.ZipFile(build_wheel(tmp_path)).namelist())
    for needed in (
        "loopstack/bundled/pipelines/train.py",
        "loopstack/bundled/pipelines/batch_score.py",
        "loopstack/bundled/drift-runtime/requirements.txt",
        "loopstack/bundled/drift-runtime/uv.lock",
        "loopstack/bundled/drift-runtime/src/loopstack_drift/server.py",
        "loopstack/cli/scaffold/models/MODEL/model.yaml.tmpl",
        "loopstack/core/events/schemas/prediction.v1.json",
    ):
        assert needed in names, f"{needed} is not in the wheel"
    assert not any("__pycache__" in n or n.startswith("tests/") for n in names)


def test_a_project_without_pipelines_gets_the_built_in_ones(tmp_path: Path) -> None:
    assert {"train", "batch-score"} <= set(load_pipelines(tmp_path / "pipelines"))
    assert load_pipeline(tmp_path / "pipelines", "train").name == "train"


def test_a_project_pipeline_overrides_a_built_in_one_by_name(tmp_path: Path) -> None:
    own = tmp_path / "pipelines"
    own.mkdir()
    (own / "my_train.py").write_text(
        "from loopstack.pipelines.dsl import Pipeline\n"
        "pipeline = Pipeline(name='train', description='mine', params=[], steps=[])\n"
    )
    assert load_pipeline(own, "train").description == "mine"
    found = load_pipelines(own)
    assert found["train"].description == "mine" and "batch-score" in found


def test_init_scaffolds_a_project_whose_spec_loads(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    scaffold(project, "churn-risk")
    spec = load_model_spec(project / "models", "churn-risk")
    assert spec.feature_service == "churn_risk_v1"
    assert (project / "feature_repo" / "churn_risk.py").is_file()
    assert (project / "feature_repo" / "data" / "churn_risk_labels.parquet").is_file()
    assert "project: proj" in (project / "feature_repo" / "feature_store.yaml").read_text()
    assert spec.directory is not None and (spec.directory / "train.py").is_file()


def test_init_refuses_a_non_empty_folder_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInput, match=r"not empty.*--force"):
        scaffold(tmp_path, "diabetes")
    scaffold(tmp_path, "diabetes", force=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    with pytest.raises(InvalidInput, match="not valid"):
        scaffold(tmp_path / "new", "Bad_Name")


def test_lineage_says_why_there_is_no_git_sha(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path)
    assert git_sha(settings) == f"not a git repository ({tmp_path.resolve()})"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    assert git_sha(settings) == f"no commit yet ({tmp_path.resolve()})"
    old = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(tmp_path / "no-bin")
        assert git_sha(settings) == "unknown (git is not installed)"
    finally:
        os.environ["PATH"] = old

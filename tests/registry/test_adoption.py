"""Checks of a model trained outside Loopstack against its spec, on real MLflow model folders."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from loopstack.core.errors import InvalidInput
from loopstack.pipelines.adoption import unpack_model
from loopstack.registry.adoption import (
    Candidate,
    Source,
    check_candidate,
    fetch_candidate,
    origin_lineage,
)
from loopstack.registry.errors import (
    ModelSourceNotFound,
    NoSignature,
    SignatureMismatch,
    UnsupportedFlavour,
)
from mlflow.models import infer_signature
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

SPEC_INPUTS = ["age", "sex", "bmi", "bp"]


class _Mean(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined]
    def predict(self, context: object, model_input: pd.DataFrame) -> list[float]:
        return [0.0] * len(model_input)


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series]:
    frame = load_diabetes(as_frame=True).frame
    return frame[SPEC_INPUTS], frame["target"]


def _saved(
    tmp_path: Path, name: str, inputs: pd.DataFrame, target: pd.Series, signed: bool = True
) -> Path:
    model = make_pipeline(StandardScaler(), Ridge()).fit(inputs, target)
    folder = tmp_path / name
    signature = infer_signature(inputs, model.predict(inputs)) if signed else None
    mlflow.sklearn.save_model(model, str(folder), signature=signature)
    return folder


def _candidate(folder: Path, tmp_path: Path) -> Candidate:
    return fetch_candidate("file:///nowhere", Source("path", str(folder)), tmp_path)


def test_a_signed_sklearn_pipeline_on_the_specs_columns_passes(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    candidate = _candidate(_saved(tmp_path, "m", *data), tmp_path)
    check_candidate(candidate, "diabetes", "regression", SPEC_INPUTS)
    origin = origin_lineage(candidate, "api:alice")
    assert origin["flavour"] == "sklearn"
    assert [c["name"] for c in origin["signature"]["inputs"]] == SPEC_INPUTS
    assert origin["trained"] == "trained outside Loopstack"
    assert "code (git sha)" in origin["not_known"]


def test_missing_and_extra_columns_are_named(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    inputs, target = data
    odd = inputs.drop(columns=["bp"]).assign(s1=1.0)
    candidate = _candidate(_saved(tmp_path, "m", odd, target), tmp_path)
    with pytest.raises(SignatureMismatch) as caught:
        check_candidate(candidate, "diabetes", "regression", SPEC_INPUTS)
    assert "missing column(s) ['bp']" in str(caught.value)
    assert "extra column(s) ['s1']" in str(caught.value)


def test_a_model_without_a_signature_is_refused_with_the_fix(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    candidate = _candidate(_saved(tmp_path, "m", *data, signed=False), tmp_path)
    with pytest.raises(NoSignature, match="infer_signature"):
        check_candidate(candidate, "diabetes", "regression", SPEC_INPUTS)


def test_a_pyfunc_model_serves_regression_but_not_classification(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    inputs, _ = data
    folder = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(str(folder), python_model=_Mean(),
                             signature=infer_signature(inputs, [0.0] * len(inputs)))  # fmt: skip
    candidate = _candidate(folder, tmp_path)
    check_candidate(candidate, "diabetes", "regression", SPEC_INPUTS)
    with pytest.raises(UnsupportedFlavour, match="predict_proba"):
        check_candidate(candidate, "diabetes", "classification", SPEC_INPUTS)


def test_a_folder_without_a_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelSourceNotFound, match="no MLmodel file"):
        _candidate(tmp_path, tmp_path)


def test_an_uploaded_archive_is_unpacked_safely(
    tmp_path: Path, data: tuple[pd.DataFrame, pd.Series]
) -> None:
    folder = _saved(tmp_path, "m", *data)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="model")
    assert (unpack_model(buffer.getvalue(), tmp_path / "out") / "MLmodel").is_file()
    with pytest.raises(InvalidInput, match=r"not a readable tar\.gz"):
        unpack_model(b"not a tarball", tmp_path / "bad")
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w:gz") as tar:
        info = tarfile.TarInfo("../escape/MLmodel")
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(InvalidInput):
        unpack_model(evil.getvalue(), tmp_path / "evil")
    assert not (tmp_path / "escape").exists()

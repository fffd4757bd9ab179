"""Load one registered MLflow model version (sklearn flavor) with its signature, ready to score."""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopstack.registry.uris import mlflow_pointed_at
from loopstack.serving.errors import UnsupportedModel
from loopstack.serving.schema import ModelSchema

__all__ = ["REFERENCE_ARTIFACT", "LoadedVersion", "Scores", "load_reference", "load_version"]

log = logging.getLogger(__name__)
REFERENCE_ARTIFACT = "reference/reference.parquet"
"""The drift reference sample the train pipeline logs in a version's run (inputs + prediction)."""


@dataclass(frozen=True)
class Scores:
    """What one model call returned for a batch of rows."""

    predictions: list[Any]
    probabilities: list[list[float]] | None = None


@dataclass(frozen=True)
class LoadedVersion:
    """A version in memory: the estimator, its input schema and, for classifiers, its classes."""

    model: str
    version: str
    estimator: Any
    schema: ModelSchema
    classes: list[Any] | None
    prediction_datatype: str
    example: pd.DataFrame | None = field(default=None, compare=False, repr=False)
    """The model's logged input example, if any (a fallback background for explanations)."""
    platform: str = "mlflow_sklearn"
    """OIP model metadata `platform`: `mlflow_sklearn`, or `mlflow_pyfunc` (pyfunc only)."""

    @property
    def is_classifier(self) -> bool:
        """Whether the model answers class probabilities."""
        return self.classes is not None

    def score(self, frame: pd.DataFrame) -> Scores:
        """Predict a validated frame; a classifier answers its label and class probabilities."""
        if self.classes is None:
            raw = np.asarray(self.estimator.predict(frame))
            return Scores(predictions=raw.tolist())
        proba = np.asarray(self.estimator.predict_proba(frame), dtype=float)
        labels = np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)]
        return Scores(predictions=[_plain(v) for v in labels], probabilities=proba.tolist())

    def output_tensors(self) -> list[dict[str, Any]]:
        """OIP v2 metadata of what this version answers."""
        outputs = [{"name": "prediction", "datatype": self.prediction_datatype, "shape": [-1]}]
        if self.classes is not None:
            outputs.append(
                {"name": "probabilities", "datatype": "FP64", "shape": [-1, len(self.classes)]}
            )
        return outputs


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value JSON and protobuf accept."""
    return value.item() if isinstance(value, np.generic) else value


def _label_datatype(classes: list[Any]) -> str:
    if all(isinstance(c, bool) for c in classes):
        return "BOOL"
    if all(isinstance(c, int) for c in classes):
        return "INT64"
    if all(isinstance(c, int | float) for c in classes):
        return "FP64"
    return "BYTES"


def load_version(tracking_uri: str, model: str, version: str) -> LoadedVersion:
    """Download `models:/<model>/<version>` and load it; raise UnsupportedModel if unservable."""
    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    from mlflow.models import Model

    folder = tempfile.mkdtemp(prefix="loopstack-model-")
    keep = False
    try:
        with mlflow_pointed_at(tracking_uri):
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{model}/{version}", dst_path=folder
            )
        meta = Model.load(local)
        if "sklearn" not in meta.flavors and "python_function" not in meta.flavors:
            raise UnsupportedModel(
                f"{model} v{version} has flavors {sorted(meta.flavors)}; Loopstack serves the "
                "sklearn and python_function flavors: log the model with "
                "mlflow.sklearn.log_model(..., signature=infer_signature(X, y)), register that "
                "version and deploy it"
            )
        if meta.signature is None:
            raise UnsupportedModel(
                f"{model} v{version} was logged without a signature, so its inputs are unknown: "
                "log it again with mlflow.sklearn.log_model(..., signature=infer_signature(X, y)) "
                "where X is a DataFrame of the model's inputs, register that version and deploy it"
            )
        schema = ModelSchema.from_signature(meta.signature.inputs, f"{model} v{version}")
        if "sklearn" in meta.flavors:
            estimator = mlflow.sklearn.load_model(local)
        else:  # a pyfunc-only regression model (`loopstack models register` refuses classifiers)
            estimator = _PyfuncRegressor(mlflow.pyfunc.load_model(local))
            # A custom PythonModel may open its artifacts at predict time: they stay on disk
            # for the life of the process.
            keep = True
        example = _input_example(meta, local)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    classes = _classes(estimator)
    if classes is not None:
        datatype = _label_datatype(classes)
    else:
        datatype = _regression_datatype(meta.signature.outputs)
    platform = "mlflow_sklearn" if "sklearn" in meta.flavors else "mlflow_pyfunc"
    return LoadedVersion(
        model, str(version), estimator, schema, classes, datatype, example, platform
    )


class _PyfuncRegressor:
    """A pyfunc model answering one number per row, whatever shape its `predict` returns."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model.predict(frame)).reshape(len(frame), -1)[:, 0]


def _input_example(meta: Any, local: str) -> pd.DataFrame | None:
    """The logged input example as a frame (None without one: it is only an explainer fallback)."""
    try:
        example = meta.load_input_example(local)
    except Exception as exc:  # an unreadable example must not stop the version from serving
        log.warning("%s: input example unreadable (%s); explanations need a reference", local, exc)
        return None
    return example if isinstance(example, pd.DataFrame) and not example.empty else None


def load_reference(tracking_uri: str, model: str, version: str) -> pd.DataFrame | None:
    """The version's reference sample (`reference/reference.parquet` of its run), or None."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    run_id = client.get_model_version(model, version).run_id
    folder, name = REFERENCE_ARTIFACT.rsplit("/", 1)
    # Listing first: a missing artifact is a normal answer here, not an exception to classify.
    if not run_id or name not in {Path(a.path).name for a in client.list_artifacts(run_id, folder)}:
        return None
    with tempfile.TemporaryDirectory(prefix="loopstack-reference-") as target:
        with mlflow_pointed_at(tracking_uri):
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id,
                artifact_path=REFERENCE_ARTIFACT,
                dst_path=target,
                tracking_uri=tracking_uri,
            )
        return pd.read_parquet(local)


def _classes(estimator: Any) -> list[Any] | None:
    from sklearn.base import is_classifier

    if not (is_classifier(estimator) and hasattr(estimator, "predict_proba")):
        return None
    return [_plain(c) for c in np.asarray(estimator.classes_).tolist()]


def _regression_datatype(outputs: Any) -> str:
    if outputs is None or not getattr(outputs, "inputs", None):
        return "FP64"
    spec = outputs.inputs[0]
    kind = str(getattr(spec, "type", "double"))
    return {"long": "INT64", "integer": "INT32", "float": "FP32"}.get(kind, "FP64")

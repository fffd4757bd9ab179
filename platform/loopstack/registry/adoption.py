"""Adopting a model trained outside Loopstack: fetch it, check it against the spec, register it.

A model from a notebook or another system arrives as an MLflow model (a run of the stack's
MLflow, any MLflow model URI, or a folder holding an `MLmodel` file). It is copied into a run of
the `loopstack-adopted` experiment, so the version never depends on where it came from staying
put, and registered with the lineage that can be known about it; the rest is stated as unknown.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from loopstack.registry.errors import (
    ModelSourceNotFound,
    NoSignature,
    RegistryUnavailable,
    SignatureMismatch,
    UnsupportedFlavour,
)
from loopstack.registry.timeouts import mlflow_answers, unanswered, why_unanswered
from loopstack.registry.uris import mlflow_pointed_at

__all__ = [
    "ADOPTED_EXPERIMENT",
    "NOT_KNOWN",
    "Candidate",
    "Source",
    "check_candidate",
    "fetch_candidate",
    "load_candidate",
    "origin_lineage",
    "store_candidate",
]

ADOPTED_EXPERIMENT = "loopstack-adopted"
"""MLflow experiment holding one run per adopted model version (the copied model)."""
NOT_KNOWN = "trained outside Loopstack"
"""What lineage says of the training data and code of an adopted version."""
_SKLEARN = "sklearn"
_PYFUNC = "python_function"
# Written by MLflow when a model is registered: stale once copied under another name.
_STALE_FILES = ("registered_model_meta",)


@dataclass(frozen=True)
class Source:
    """Where the model to adopt is: a run of the stack's MLflow, a model URI, or a folder."""

    kind: Literal["run", "uri", "path"]
    value: str
    artifact_path: str = "model"
    """The model's name (artifact path) in the run, for `kind="run"`."""

    @property
    def uri(self) -> str:
        """The MLflow URI the model is downloaded from."""
        if self.kind == "run":
            return f"runs:/{self.value}/{self.artifact_path}"
        return self.value

    def describe(self) -> str:
        """The source as the user named it."""
        if self.kind == "run":
            return f"run {self.value} (model {self.artifact_path!r})"
        return f"{'folder' if self.kind == 'path' else 'URI'} {self.value}"


@dataclass(frozen=True)
class Candidate:
    """A model read from its source: a local copy, its flavour and its signature."""

    source: Source
    local: Path
    flavours: list[str]
    signature: dict[str, Any] | None
    """`ModelSignature.to_dict()`, None without a signature."""
    inputs: list[str]
    """Input column names of the signature, in its order (empty without names)."""

    @property
    def flavour(self) -> str:
        """The flavour the model is loaded with: sklearn if it has it, else pyfunc."""
        return _SKLEARN if _SKLEARN in self.flavours else _PYFUNC


def fetch_candidate(tracking_uri: str, source: Source, workdir: Path) -> Candidate:
    """A local copy of the source's model and what its `MLmodel` file says.

    Raises:
        ModelSourceNotFound: nothing at the source, or no `MLmodel` file there.
    """
    from mlflow.artifacts import download_artifacts
    from mlflow.models import Model

    if source.kind == "path":
        local = Path(source.value)
        if not (local / "MLmodel").is_file():
            raise ModelSourceNotFound(source.describe(), "no MLmodel file in it")
    else:
        try:
            with mlflow_pointed_at(tracking_uri):
                local = Path(download_artifacts(artifact_uri=source.uri, dst_path=str(workdir)))
        except (MlflowException, OSError) as exc:
            if unanswered(exc):
                raise RegistryUnavailable(tracking_uri, why_unanswered(exc)) from exc
            raise ModelSourceNotFound(source.describe(), str(exc).splitlines()[0]) from exc
        if not (local / "MLmodel").is_file():
            raise ModelSourceNotFound(source.describe(), "it holds no MLmodel file")
    meta = Model.load(str(local))
    signature = meta.signature
    names = (
        list(signature.inputs.input_names())
        if signature is not None and signature.inputs.has_input_names()
        else []
    )
    return Candidate(
        source=source,
        local=local,
        flavours=sorted(meta.flavors),
        signature=signature.to_dict() if signature is not None else None,
        inputs=[str(n) for n in names],
    )


def check_candidate(candidate: Candidate, model: str, task: str, expected: list[str]) -> None:
    """Refuse a model Loopstack could not serve for the spec, naming the fix.

    Args:
        candidate: the fetched model.
        model: the spec's model name.
        task: the spec's task.
        expected: the spec's input columns (request fields, then the feature service's).

    Raises:
        UnsupportedFlavour: neither sklearn nor pyfunc; or a pyfunc-only classifier (it
            cannot answer class probabilities).
        NoSignature: the model was logged without a signature.
        SignatureMismatch: its input columns are not the spec's (missing and extra named).
    """
    where = candidate.source.describe()
    if _SKLEARN not in candidate.flavours:
        if _PYFUNC not in candidate.flavours:
            raise UnsupportedFlavour(
                where, candidate.flavours,
                "Loopstack serves the sklearn and python_function flavours: log it with "
                "mlflow.sklearn.log_model or mlflow.pyfunc.log_model",
            )  # fmt: skip
        if task == "classification":
            raise UnsupportedFlavour(
                where, candidate.flavours,
                "a classifier must answer class probabilities (predict_proba): log it with "
                "mlflow.sklearn.log_model",
            )  # fmt: skip
    if candidate.signature is None:
        raise NoSignature(where)
    missing = [c for c in expected if c not in candidate.inputs]
    extra = [c for c in candidate.inputs if c not in expected]
    if missing or extra or not candidate.inputs:
        raise SignatureMismatch(where, model, missing, extra)


def load_candidate(candidate: Candidate) -> Any:
    """The model in memory: the sklearn estimator, or the pyfunc model (it has `predict`).

    Raises:
        UnsupportedFlavour: it does not load here (the inference server could not load it either).
    """
    import mlflow.pyfunc
    import mlflow.sklearn

    try:
        if candidate.flavour == _SKLEARN:
            return mlflow.sklearn.load_model(str(candidate.local))
        return mlflow.pyfunc.load_model(str(candidate.local))
    except Exception as exc:  # any loader error: the model is unusable as it is
        detail = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"
        raise UnsupportedFlavour(
            candidate.source.describe(),
            candidate.flavours,
            f"it does not load ({detail}); log it with the stack's scikit-learn and Python versions",
        ) from exc


def origin_lineage(candidate: Candidate, actor: str) -> dict[str, Any]:
    """What is known of an adopted version's origin, and what is not."""
    return {
        "trained": NOT_KNOWN,
        "source": {
            "kind": candidate.source.kind,
            "value": candidate.source.value,
            "uri": candidate.source.uri,
        },
        "flavour": candidate.flavour,
        "flavours": candidate.flavours,
        "signature": _columns(candidate.signature),
        "registered_by": actor,
        "registered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "not_known": ["training data", "training window", "code (git sha)", "parameters"],
        "drift": "not watched: a version made outside has no reference sample or detectors "
        "(its traffic is counted); a retraining by Loopstack brings them",
    }


def _columns(signature: dict[str, Any] | None) -> dict[str, Any] | None:
    """The signature's input and output columns as JSON (MLflow keeps them as JSON strings)."""
    if signature is None:
        return None
    return {
        part: json.loads(signature[part]) if signature.get(part) else None
        for part in ("inputs", "outputs")
    }


def store_candidate(
    tracking_uri: str,
    model: str,
    candidate: Candidate,
    workdir: Path,
    tags: dict[str, str],
    description: str,
) -> str:
    """Copy the model into a run of `loopstack-adopted` and register it as a new version.

    Returns:
        The new version number.

    Raises:
        RegistryUnavailable: MLflow did not answer.
    """
    with mlflow_answers(tracking_uri):
        client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
        found = client.get_experiment_by_name(ADOPTED_EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(ADOPTED_EXPERIMENT)
        copy = workdir / "adopted-model"
        shutil.copytree(candidate.local, copy, ignore=shutil.ignore_patterns(*_STALE_FILES))
        run = client.create_run(
            experiment,
            run_name=f"adopt-{model}",
            tags={"loopstack.model": model, "loopstack.adopted_from": candidate.source.describe()},
        )
        try:
            client.log_artifacts(run.info.run_id, str(copy), "model")
        except BaseException:
            client.set_terminated(run.info.run_id, "FAILED")
            raise
        client.set_terminated(run.info.run_id)
        try:
            client.get_registered_model(model)
        except MlflowException:
            client.create_registered_model(model, description=f"Loopstack model {model}")
        version = client.create_model_version(
            model,
            f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags=tags,
            description=description,
        )
        return str(version.version)

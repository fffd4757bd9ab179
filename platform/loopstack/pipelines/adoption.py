"""Adopt a model trained elsewhere: check it, gate it like a retrained challenger, register it.

The gate is the train pipeline's: the spec's `gate` metric on a holdout from the feature store
(the latest `training.holdout_fraction` of the champion's training window), the candidate
against the champion, with `better` deciding. A version that passes becomes the `challenger`,
and the loop controller takes it through shadow → canary → promote as it does a retrained one.
With no champion, or no labelled rows to hold out, lineage says so and the version passes.
"""

from __future__ import annotations

import io
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from loopstack.core.errors import InvalidInput, NotFound
from loopstack.core.modelspec import ModelSpec, load_model_spec
from loopstack.core.settings import Settings
from loopstack.pipelines.classes import model_classes
from loopstack.pipelines.metrics import better
from loopstack.pipelines.training import _holdout_metrics, split_holdout, training_classes
from loopstack.registry.adoption import (
    NOT_KNOWN,
    Candidate,
    Source,
    check_candidate,
    fetch_candidate,
    load_candidate,
    origin_lineage,
    store_candidate,
)
from loopstack.registry.errors import ClassesMismatch
from loopstack.registry.lineage import lineage_tags
from loopstack.registry.registry import CHALLENGER, CHAMPION, ModelRegistry

__all__ = ["ModelAdoption", "unpack_model"]

MAX_ARCHIVE_BYTES = 512 * 1024 * 1024


def unpack_model(archive: bytes, dest: Path) -> Path:
    """Extract a gzipped tar of a model folder (as the SDK sends `--path`); the folder.

    Raises:
        InvalidInput: not a readable tar.gz, or no `MLmodel` file in it.
    """
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise InvalidInput(f"the model archive exceeds {MAX_ARCHIVE_BYTES >> 20} MiB")
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            tar.extractall(dest, filter="data")  # `data`: no absolute paths, links or devices
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidInput(f"the model archive is not a readable tar.gz: {exc}") from exc
    found = sorted(dest.rglob("MLmodel"), key=lambda p: len(p.parts))
    if not found:
        raise InvalidInput("the model archive holds no MLmodel file: send an MLflow model folder")
    return found[0].parent


class ModelAdoption:
    """Registers models trained outside Loopstack as gated challengers."""

    def __init__(self, settings: Settings, registry: ModelRegistry) -> None:
        self.settings = settings
        self.registry = registry

    def adopt(
        self,
        model: str,
        source: Source,
        *,
        actor: str,
        archive: bytes | None = None,
        as_of: str | None = None,
        holdout: tuple[datetime, datetime] | None = None,
    ) -> dict[str, Any]:
        """Check, gate and register the source's model as a new version of `model`.

        Args:
            model: a model with a spec under `models/`.
            source: where the model is; with `archive`, `source.value` only names it.
            actor: who registers it (lineage and decisions).
            archive: the model folder as a tar.gz (what the SDK sends for `--path`).
            as_of: model time of the decisions (a replay's clock); None: now.
            holdout: the labelled window whose latest `training.holdout_fraction` is the
                gate's holdout; None: the champion's training window, else the last
                `trigger.training_window_days`.

        Returns:
            model, version, whether it is the challenger now, the gate and the lineage.

        Raises:
            NotFound: no spec for `model`, or nothing at the source.
            InvalidInput: unsupported flavour, no signature, or columns that do not match.
        """
        spec = load_model_spec(self.settings.models_dir, model)
        tracking = self.settings.mlflow_tracking_uri
        with tempfile.TemporaryDirectory(prefix="loopstack-adopt-") as folder:
            work = Path(folder)
            if archive is not None:
                unpacked = unpack_model(archive, work / "archive")
                candidate = fetch_candidate(tracking, Source("path", str(unpacked)), work)
                candidate = _renamed(candidate, source)
            else:
                candidate = fetch_candidate(tracking, source, work / "download")
            check_candidate(candidate, model, spec.task, self._inputs(spec))
            loaded = load_candidate(candidate)
            classes = _classes(spec, loaded, candidate)
            gate, evidence = self._gate(spec, loaded, candidate.inputs, holdout)
            origin = origin_lineage(candidate, actor)
            tags = lineage_tags(
                feature_service=spec.feature_service or "none (request fields only)",
                training_window=f"not known: {NOT_KNOWN}",
                data_fingerprint=f"not known: {NOT_KNOWN}",
                git_sha=f"not known: {NOT_KNOWN}",
                pipeline_run_id=f"none: registered by {actor}",
                metrics=evidence["metrics"],
                gate=gate,
                origin=origin,
                # A classifier's classes in its probability order: feedback validates outcomes.
                **({"classes": classes} if classes else {}),
            )
            verdict = "passed" if gate["passed"] else f"rejected: {gate['reason']}"
            version = store_candidate(
                tracking, model, candidate, work, {**tags, "loopstack.gate_verdict": verdict},
                f"{NOT_KNOWN}: {candidate.source.describe()}; gate: {gate['reason']}",
            )  # fmt: skip
        context = {"at": as_of} if as_of else None
        kind = "gate_passed" if gate["passed"] else "gate_failed"
        self.registry.decide(model, kind, version, gate["reason"], actor,
                             {**evidence, "adopted_from": candidate.source.describe()}, context=context)  # fmt: skip
        if gate["passed"]:
            self.registry.set_alias(model, CHALLENGER, version,
                                    f"adopted, passed the gate: {gate['reason']}", actor, context)  # fmt: skip
        return {"model": model, "version": version, "challenger": gate["passed"], "gate": gate,
                "lineage": self.registry.version(model, version).lineage}  # fmt: skip

    @cached_property
    def _store(self) -> Any:
        """The Feast store, opened on first use (a model without features never opens it)."""
        from loopstack.features.store import open_store

        return open_store(self.settings)

    def _inputs(self, spec: ModelSpec) -> list[str]:
        """The columns the model is served: request fields, then the feature service's."""
        if spec.feature_service is None:
            return list(spec.request_fields)
        from loopstack.features.registry import feature_service, service_features

        service = feature_service(self._store, spec.feature_service)
        return [*spec.request_fields, *service_features(service)]

    def _gate(
        self,
        spec: ModelSpec,
        candidate: Any,
        inputs: list[str],
        window: tuple[datetime, datetime] | None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The gate verdict and its evidence (metrics, champion, holdout rows)."""
        gate = spec.gate
        evidence: dict[str, Any] = {"metric": gate.metric, "margin": gate.margin,
                                    "metrics": {}, "champion": None, "holdout_rows": 0}  # fmt: skip
        verdict = {"metric": gate.metric, "margin": gate.margin, "passed": True}
        champion = self._champion(spec.name)
        if champion is None:
            reason = "no champion yet: the first version passes the gate"
            return {**verdict, "reason": reason}, evidence
        found, why = self._holdout(spec, champion, window)
        if found is None:
            reason = f"not gated: {why}; it goes to shadow against champion v{champion}"
            return {**verdict, "reason": reason}, {**evidence, "holdout": why}
        frame, holdout = found
        classes = (
            training_classes(spec, frame[spec.target]) if spec.task == "classification" else []
        )
        scores = _holdout_metrics(spec, candidate, holdout, inputs, classes)
        with tempfile.TemporaryDirectory(prefix="loopstack-champion-") as folder:
            held = self._fetch_version(spec.name, champion, Path(folder))
            columns = held.inputs or inputs
            reference = _holdout_metrics(spec, load_candidate(held), holdout, columns, classes)
        value, against = scores[gate.metric], reference[gate.metric]
        passed = better(value, against, gate.higher_is_better, gate.margin)
        direction = "higher" if gate.higher_is_better else "lower"
        reason = (
            f"{gate.metric} {value:.4g} vs champion v{champion} {against:.4g} "
            f"({direction} is better, margin {gate.margin:.0%}): {'passed' if passed else 'failed'}"
        )
        evidence.update(metrics=scores, holdout_rows=len(holdout), holdout=why,
                        champion={"version": champion, "metrics": reference})  # fmt: skip
        return {**verdict, "passed": passed, "reason": reason}, evidence

    def _champion(self, model: str) -> str | None:
        try:
            return self.registry.aliases(model).get(CHAMPION)
        except NotFound:  # not registered yet: this is its first version
            return None

    def _holdout(
        self, spec: ModelSpec, champion: str, window: tuple[datetime, datetime] | None
    ) -> tuple[tuple[pd.DataFrame, pd.DataFrame] | None, str]:
        """The labelled window and its holdout, and where they came from; None and why when
        there are none."""
        if spec.feature_service is None:
            return None, "the model reads no feature service, so the feature store has no holdout"
        from loopstack.features.errors import EmptyWindow
        from loopstack.features.training import training_frame

        trained = self.registry.version(spec.name, champion).lineage.get("training_window")
        if window is not None:
            (start, end), where = window, "the window asked for"
        elif isinstance(trained, dict) and "start" in trained and "end" in trained:
            start, end = (datetime.fromisoformat(trained[k]) for k in ("start", "end"))
            where = f"champion v{champion}'s training window"
        else:
            end = datetime.now(UTC)
            start = end - timedelta(days=spec.trigger.training_window_days)
            where = f"the last {spec.trigger.training_window_days} days"
        try:
            frame = training_frame(self.settings, spec, start, end, store=self._store)
        except EmptyWindow:
            return None, f"no labelled rows in {where} ({start:%Y-%m-%d} .. {end:%Y-%m-%d})"
        for column in frame.columns:  # as the train pipeline feeds its models
            if pd.api.types.is_integer_dtype(frame[column]) or pd.api.types.is_bool_dtype(
                frame[column]
            ):
                frame[column] = frame[column].astype("float64")
        _, holdout = split_holdout(frame, spec.training.holdout_fraction)
        return (frame, holdout), f"latest {spec.training.holdout_fraction:.0%} of {where}"

    def _fetch_version(self, model: str, version: str, folder: Path) -> Candidate:
        uri = f"models:/{model}/{version}"
        return fetch_candidate(self.settings.mlflow_tracking_uri, Source("uri", uri), folder)


def _renamed(candidate: Candidate, source: Source) -> Candidate:
    """The candidate with the source the user named (an uploaded folder's original path)."""
    from dataclasses import replace

    return replace(candidate, source=source)


def _classes(spec: ModelSpec, model: Any, candidate: Candidate) -> list[Any] | None:
    """A classifier's classes in the order it answers probabilities; None for a regressor."""
    if spec.task != "classification":
        return None
    found = model_classes(model)
    if spec.classes is not None and sorted(map(str, found)) != sorted(map(str, spec.classes)):
        raise ClassesMismatch(candidate.source.describe(), spec.name, found, list(spec.classes))
    return found

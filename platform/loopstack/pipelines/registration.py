"""The `register` step: log the chosen model, register a version with lineage, set `challenger`.

A failure after the version is created deletes it again, so nothing is left half-registered.
"""

from __future__ import annotations

import pickle
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from loopstack.core.events.envelope import Event
from loopstack.core.events.log import open_event_log
from loopstack.core.events.outbox import Publisher
from loopstack.core.events.topics import DECISIONS
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.pipelines.context import StepContext
from loopstack.pipelines.training import predict_output, split_holdout
from loopstack.registry.lineage import lineage_tags
from loopstack.registry.registry import CHALLENGER, ModelRegistry

__all__ = ["register", "open_publisher", "git_sha"]


@contextmanager
def open_publisher(settings: Settings, name: str) -> Iterator[Publisher]:
    """A publisher for a short-lived process: everything queued is sent before it closes."""
    log = open_event_log(settings)
    publisher = Publisher.open(settings, log, name)
    try:
        yield publisher
    finally:
        publisher.close(timeout=30)
        log.close()


def git_sha(settings: Settings) -> str:
    """The project's git commit; else why there is none, for the lineage reader.

    `not a git repository (DIR)` for a project outside git, `no commit yet (DIR)` for a repository
    without one, and `unknown (git is not installed)` only when git itself is missing.
    """
    folder = settings.project_dir.resolve()
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--verify", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except FileNotFoundError:
        return "unknown (git is not installed)"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown (git failed: {exc})"
    if out.returncode == 0:
        return out.stdout.strip()
    reason = out.stderr.strip().splitlines()[0] if out.stderr.strip() else ""
    if "not a git repository" in reason:
        return f"not a git repository ({folder})"
    if "Needed a single revision" in reason or "unknown revision" in reason:
        return f"no commit yet ({folder})"
    return f"unknown (git: {reason or f'exit {out.returncode}'})"


def _feature_views(settings: Settings, service_name: str) -> list[str]:
    from loopstack.features.registry import feature_service
    from loopstack.features.store import open_store

    service = feature_service(open_store(settings), service_name)
    return sorted(p.name for p in service.feature_view_projections)


def register(ctx: StepContext) -> None:
    """Register the evaluated model; alias it `challenger` if it passed the gate."""
    spec = load_model_spec(ctx.settings.models_dir, ctx.params["model"])
    evaluation = ctx.read_json("evaluate", "evaluation.json")
    meta = ctx.read_json("training-set", "meta.json")
    frame = pd.read_parquet(ctx.input("training-set", "training_set.parquet"))
    model = pickle.loads(ctx.input("train", "model.pkl", evaluation["best_branch"]).read_bytes())
    inputs = frame[meta["inputs"]]
    _, holdout = split_holdout(frame, spec.training.holdout_fraction)
    example = inputs.head(5).copy()
    for field in spec.sensitive_fields:
        if field in example:
            example[field] = example[field].iloc[0] * 0  # no real value of a sensitive field leaves
    signature = infer_signature(example, predict_output(spec.task, model, example))
    gate = evaluation["gate"]
    mlflow.log_artifact(str(ctx.input("reference", "reference.parquet")), artifact_path="reference")
    detectors = ctx.input("fit-detectors", "bundle.tar.gz")
    if detectors.is_file():  # the drift consumer loads it as `detectors/bundle.tar.gz`
        mlflow.log_artifact(str(detectors), artifact_path="detectors")
    mlflow.log_dict(evaluation, "evaluation.json")
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=["scikit-learn", "pandas", "numpy"],
        serialization_format="cloudpickle",
    )
    tags = lineage_tags(
        feature_service=spec.feature_service,
        feature_views=_feature_views(ctx.settings, spec.feature_service)
        if spec.feature_service
        else [],
        training_window={"start": meta["start"], "end": meta["end"], "rows": meta["rows"]},
        data_fingerprint=meta["fingerprint"],
        git_sha=git_sha(ctx.settings),
        pipeline_run_id=ctx.run_id,
        params=evaluation["params"],
        metrics=evaluation["metrics"],
        gate=gate,
        labels=_label_counts(meta),
        # A classifier's classes in its probability order: feedback validates outcomes with them.
        **({"classes": evaluation["classes"]} if evaluation.get("classes") else {}),
    )
    client = MlflowClient(ctx.settings.mlflow_tracking_uri)
    _ensure_registered(client, spec.name)
    version = client.create_model_version(
        spec.name,
        info.model_uri,
        run_id=info.run_id,
        model_id=info.model_id,
        tags={**tags, "loopstack.holdout_rows": str(len(holdout))},
        description=f"trained by pipeline run {ctx.run_id}; gate: {gate['reason']}",
    )
    try:
        _decide(ctx, spec.name, str(version.version), gate, evaluation)
    except BaseException:
        client.delete_model_version(spec.name, version.version)
        raise
    ctx.write_json(
        "registered.json", {"model": spec.name, "version": str(version.version), "gate": gate}
    )


def _label_counts(meta: dict[str, Any]) -> dict[str, int]:
    """Lineage of the labels: how many came from files, fed-back outcomes and human reviews."""
    labels = meta.get("labels") or {}
    return {origin: int(labels.get(origin, 0)) for origin in ("file", "feedback", "human")}


def _ensure_registered(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description=f"Loopstack model {name}")


def _decide(
    ctx: StepContext, model: str, version: str, gate: dict[str, Any], evaluation: dict[str, Any]
) -> None:
    with open_publisher(ctx.settings, f"pipeline-{ctx.step}") as publisher:
        registry = ModelRegistry(
            ctx.settings.mlflow_tracking_uri, publisher, source=f"loopstack/pipeline/{ctx.pipeline}"
        )
        evidence = {
            "metric": gate["metric"],
            "metrics": evaluation["metrics"],
            "champion": evaluation["champion"],
            "margin": gate["margin"],
            "pipeline_run_id": ctx.run_id,
            "holdout_rows": evaluation["holdout_rows"],
        }
        kind = "gate_passed" if gate["passed"] else "gate_failed"
        # Model time: a replay's clock when the loop passed one, else the event's own time.
        context = {"at": ctx.params["as_of"]} if ctx.params.get("as_of", "now") != "now" else {}
        publisher.publish(
            DECISIONS,
            Event.create(
                "decision.v1",
                {
                    "model": model,
                    "kind": kind,
                    "version": version,
                    "reason": gate["reason"],
                    "evidence": evidence,
                    **context,
                },
                source=registry.source,
                subject=model,
            ),
        )
        if gate["passed"]:
            registry.set_alias(
                model,
                CHALLENGER,
                version,
                f"passed the gate: {gate['reason']}",
                actor="pipeline",
                context=context,
            )
        MlflowClient(ctx.settings.mlflow_tracking_uri).set_model_version_tag(
            model,
            version,
            "loopstack.gate_verdict",
            "passed" if gate["passed"] else f"rejected: {gate['reason']}",
        )

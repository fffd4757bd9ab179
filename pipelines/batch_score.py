"""The `batch-score` pipeline: score a point-in-time feature window with any version, write parquet.

window (the model's feature service joined as of each row's time) → score (the requested
version, a number or an alias) → `steps/score/predictions.parquet`, also logged to MLflow.
"""

from __future__ import annotations

from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.pipelines import scoring
from loopstack.pipelines.dsl import Param, Pipeline
from loopstack.pipelines.plan import check_window


def _resolve(settings: Settings, params: dict[str, str]) -> dict[str, str]:
    """Check the model and window before anything runs."""
    load_model_spec(settings.models_dir, params["model"])
    check_window(params["start"], params["end"])
    return params


pipeline = Pipeline(
    name="batch-score",
    description="Score a feature window with any registered version; write the predictions as parquet.",
    params=[
        Param("model", help="model name under models/"),
        Param("start", help="window start (ISO date)"),
        Param("end", help="window end, exclusive (ISO date)"),
        Param("version", default="champion", help="version number or alias to score with"),
    ],
    resolve=_resolve,
)

pipeline.step("window", cache=False)(scoring.build_scoring_window)
pipeline.step("score", after=("window",), cache=False)(scoring.score_window)

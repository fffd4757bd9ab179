"""The compiled Argo manifests validate and carry the local definition's steps and parameters."""

from __future__ import annotations

from pathlib import Path

from hera.workflows.models import CronWorkflow as CronModel
from hera.workflows.models import WorkflowTemplate as TemplateModel
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.pipelines.compile import compile_cron, compile_pipeline
from loopstack.pipelines.loader import load_pipelines

from tests.conftest import PROJECT_DIR, run_cli, stack_env
from tests.crds import validate_custom_resource

SETTINGS = Settings(project_dir=PROJECT_DIR)


def test_every_pipeline_compiles_to_a_valid_workflow_template() -> None:
    for pipeline in load_pipelines(SETTINGS.pipelines_dir).values():
        doc = compile_pipeline(pipeline, SETTINGS).to_dict()
        validate_custom_resource(doc)
        TemplateModel.model_validate(doc)
        dag = next(t for t in doc["spec"]["templates"] if t["name"] == "main")["dag"]["tasks"]
        assert [t["name"] for t in dag] == [s.name for s in pipeline.steps]
        for task, step in zip(dag, pipeline.steps, strict=True):
            assert task.get("dependencies", []) == list(step.after)
            assert ("withParam" in task) == (step.sweep is not None)
        assert [p["name"] for p in doc["spec"]["arguments"]["parameters"]] == pipeline.param_names


def test_scheduled_retraining_compiles_to_a_valid_cron_workflow() -> None:
    pipeline = load_pipelines(SETTINGS.pipelines_dir)["train"]
    spec = load_model_spec(SETTINGS.models_dir, "bike-demand")
    assert spec.trigger.schedule
    doc = compile_cron(pipeline, spec, SETTINGS, spec.trigger.schedule).to_dict()
    validate_custom_resource(doc)
    CronModel.model_validate(doc)
    assert doc["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == "loopstack-train"
    assert doc["spec"]["schedules"] == [spec.trigger.schedule]


def test_cli_compile_writes_the_manifests(tmp_path: Path) -> None:
    result = run_cli(
        stack_env(tmp_path / "state"), "pipeline", "compile", "train", "-o", str(tmp_path / "out")
    )
    assert result.returncode == 0, result.stderr
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert "workflowtemplate-loopstack-train.yaml" in names
    assert "cronworkflow-loopstack-train-bike-demand.yaml" in names

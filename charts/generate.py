"""Regenerate the chart's generated files: `uv run python charts/generate.py [--check]`.

* `files/workflows/`: the Argo WorkflowTemplate of every pipeline in `pipelines/` and a
  CronWorkflow per model spec with `trigger.schedule`, compiled by `loopstack.pipelines.compile`
  exactly as `loopstack pipeline compile` does. Images are the placeholders `LOOPSTACK_IMAGE` /
  `LOOPSTACK_DRIFT_IMAGE`, which the chart's `workflows.yaml` replaces by the configured images.
* `files/dashboards/`: the Grafana dashboards of `loopstack.monitoring.dashboards`.

`--check` writes nothing and exits 1 listing the files that differ (tests/charts use `generate`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from loopstack.core.modelspec import list_model_specs
from loopstack.core.settings import KubernetesSettings, Settings
from loopstack.monitoring.dashboards import build_all
from loopstack.pipelines.compile import compile_cron, compile_pipeline
from loopstack.pipelines.loader import load_pipelines

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "loopstack"
PLATFORM_IMAGE = "LOOPSTACK_IMAGE"
DRIFT_IMAGE = "LOOPSTACK_DRIFT_IMAGE"
# The pipeline every model's schedule runs.
SCHEDULED_PIPELINE = "train"


def _settings() -> Settings:
    # Explicit values, so a developer's LOOPSTACK_* environment cannot change the output.
    kubernetes = KubernetesSettings(image=PLATFORM_IMAGE, drift_image=DRIFT_IMAGE)
    return Settings(project_dir=ROOT, kubernetes=kubernetes)


def _dump(doc: dict) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def workflows() -> dict[str, str]:
    """Relative path under the chart -> YAML text of each compiled WorkflowTemplate/CronWorkflow."""
    settings = _settings()
    pipelines = load_pipelines(settings.pipelines_dir)
    objects = [compile_pipeline(p, settings) for p in pipelines.values()]
    for spec in list_model_specs(settings.models_dir):
        if spec.trigger.schedule:
            pipeline = pipelines[SCHEDULED_PIPELINE]
            objects.append(compile_cron(pipeline, spec, settings, spec.trigger.schedule))
    out = {}
    for obj in objects:
        doc = obj.to_dict()
        out[f"files/workflows/{doc['kind'].lower()}-{doc['metadata']['name']}.yaml"] = _dump(doc)
    return out


def dashboards() -> dict[str, str]:
    """Relative path under the chart -> JSON text of each dashboard."""
    return {
        f"files/dashboards/{name}.json": json.dumps(doc, indent=2, sort_keys=True) + "\n"
        for name, doc in build_all().items()
    }


def generate() -> dict[str, str]:
    """Every generated file of the chart, by path relative to the chart."""
    return {**workflows(), **dashboards()}


def stale(chart: Path = CHART) -> list[str]:
    """Generated files that are missing, differ, or are left over from an older generation."""
    wanted = generate()
    differ = [p for p, text in wanted.items() if _read(chart / p) != text]
    present = {
        str(p.relative_to(chart))
        for folder in ("files/workflows", "files/dashboards")
        for p in (chart / folder).glob("*")
    }
    return sorted(differ + sorted(present - set(wanted)))


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def write(chart: Path = CHART) -> None:
    """Write the generated files and remove leftovers."""
    wanted = generate()
    for folder in ("files/workflows", "files/dashboards"):
        (chart / folder).mkdir(parents=True, exist_ok=True)
        for old in (chart / folder).glob("*"):
            if str(old.relative_to(chart)) not in wanted:
                old.unlink()
    for rel, text in wanted.items():
        (chart / rel).write_text(text)


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        bad = stale()
        if bad:
            print("stale generated chart files (run `uv run python charts/generate.py`):")
            print("\n".join(f"  {p}" for p in bad))
            sys.exit(1)
    else:
        write()

"""Generated chart files (Argo workflows, Grafana dashboards) are current and well-formed."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from loopstack.monitoring.dashboards import build_all
from loopstack.monitoring.dashboards.__main__ import main as dashboards_main

from tests.charts.tools import CHART, ROOT
from tests.crds import validate_custom_resource

METRIC = re.compile(r"\bloopstack_[a-z0-9_]+\b")
KNOWN = set((CHART / "files" / "metrics.txt").read_text().split())


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "loopstack_chart_generate", ROOT / "charts" / "generate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_up_to_date(generator: ModuleType) -> None:
    stale = generator.stale()
    assert not stale, f"stale: {stale}; run `uv run python charts/generate.py`"


def test_workflows_validate_against_argo_crds() -> None:
    files = sorted((CHART / "files" / "workflows").glob("*.yaml"))
    assert {yaml.safe_load(f.read_text())["kind"] for f in files} == {
        "WorkflowTemplate",
        "CronWorkflow",
    }
    for file in files:
        validate_custom_resource(yaml.safe_load(file.read_text()))


def test_dashboards_module_cli_writes_the_same_json(tmp_path: Path) -> None:
    assert dashboards_main([str(tmp_path)]) == 0
    for name, doc in build_all().items():
        assert json.loads((tmp_path / f"{name}.json").read_text()) == doc


def _panels(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["panels"] if p["type"] != "row"]


@pytest.mark.parametrize("name", sorted(build_all()))
def test_dashboard_structure(name: str) -> None:
    doc = build_all()[name]
    assert doc["uid"] == f"loopstack-{name}" and doc["title"].startswith("Loopstack / ")
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = _panels(doc)
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            used = set(METRIC.findall(target["expr"]))
            assert used, f"{panel['title']}: no Loopstack metric in {target['expr']}"
            assert used <= KNOWN, f"{panel['title']}: unknown metrics {used - KNOWN}"
            assert target["datasource"]["uid"] == "${datasource}"
    positions = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in doc["panels"]]
    assert len(positions) == len(set(positions)), "overlapping panels"


def test_metrics_list_is_what_rules_and_dashboards_use() -> None:
    rules = (CHART / "files" / "alerts" / "loopstack.rules.yaml").read_text()
    used = set(METRIC.findall(rules))
    for doc in build_all().values():
        used |= set(METRIC.findall(json.dumps(doc)))
    assert used == KNOWN, f"metrics.txt lacks {used - KNOWN}, lists unused {KNOWN - used}"

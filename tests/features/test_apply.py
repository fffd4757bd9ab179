"""`features apply`: the plan, the apply, and the refusal of definitions the offline engine cannot use.

Each test works on its own copy of the real feature repository (its definitions edited as a user
would) with a private state dir.
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from loopstack.api.app import create_app
from loopstack.api.errors import install_error_handlers
from loopstack.api.routes.features import router
from loopstack.cli import features as features_cli
from loopstack.core.modelspec import load_model_spec
from loopstack.core.settings import Settings
from loopstack.features import store as feature_store
from loopstack.features.errors import FeatureDefinitionRefused
from loopstack.features.offline import offline_dir
from loopstack.features.online import online_features
from loopstack.features.validation import ttl_problem
from typer.testing import CliRunner

from tests.servers import asgi_server

from .conftest import ONLINE_AS_OF, PROJECT_DIR, YEAR_START

LAGS = ["bikers_last_hour", "bikers_same_hour_yesterday", "bikers_mean_7d"]


def _copy(tmp_path: Path) -> Settings:
    repo = tmp_path / "project" / "feature_repo"
    shutil.copytree(
        PROJECT_DIR / "feature_repo", repo, ignore=shutil.ignore_patterns("__pycache__", "*.db")
    )
    return Settings(project_dir=tmp_path / "project", state_dir=tmp_path / "state")


def _edit(settings: Settings, file: str, old: str, new: str) -> Path:
    path = settings.feature_repo_dir / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return path


def _changes(plan: feature_store.ApplyPlan) -> set[tuple[str, str, str]]:
    return {(c.action, c.kind, c.name) for c in plan.changes}


def test_dry_run_plans_then_apply_applies_and_edits_show_as_changes(tmp_path: Path) -> None:
    settings = _copy(tmp_path)
    plan = feature_store.apply_repo(settings, dry_run=True)
    assert not plan.applied
    assert {
        ("add", "feature view", "city_demand_lags"),
        ("add", "feature view", "customer_credit"),
        ("add", "feature service", "bike_demand_v1"),
        ("add", "entity", "city"),
    } <= _changes(plan)
    # A dry run registers nothing and seeds no dataset.
    store = feature_store.open_store(settings)
    assert store.list_feature_views() == []
    assert not offline_dir(feature_store.feast_dir(settings)).exists()

    applied = feature_store.apply_repo(settings, store)
    assert applied.applied and _changes(applied) == _changes(plan)
    assert {v.name for v in store.list_feature_views()} == {"city_demand_lags", "customer_credit"}
    # Applied again unchanged: nothing to do (the push source's registry timestamps aside).
    assert feature_store.apply_repo(settings, store, dry_run=True).changes == []

    _edit(settings, "bike_demand.py", "ttl=timedelta(hours=2)", "ttl=timedelta(hours=3)")
    (settings.feature_repo_dir / "credit_default.py").unlink()
    plan = feature_store.apply_repo(settings, store, dry_run=True)
    changed = [c for c in plan.changes if c.action == "change"]
    assert [(c.name, c.properties) for c in changed] == [("city_demand_lags", ["ttl"])]
    assert {
        ("remove", "feature view", "customer_credit"),
        ("remove", "feature service", "credit_default_v1"),
        ("remove", "entity", "customer"),
    } <= _changes(plan)
    assert store.get_feature_view("city_demand_lags").ttl == timedelta(hours=2)  # dry run

    spec = load_model_spec(PROJECT_DIR / "models", "bike-demand")
    feature_store.materialize(settings, YEAR_START, ONLINE_AS_OF, ["city_demand_lags"], store)
    later = ONLINE_AS_OF + timedelta(hours=2, minutes=30)
    assert online_features(store, spec, [{"city_id": "dc"}], later).missing == [LAGS]
    feature_store.apply_repo(settings, store)
    assert store.get_feature_view("city_demand_lags").ttl == timedelta(hours=3)
    # Online lookups judge by the TTL just applied.
    assert online_features(store, spec, [{"city_id": "dc"}], later).missing == [[]]
    assert {v.name for v in store.list_feature_views()} == {"city_demand_lags"}
    # Label and push sources still read the state dir's datasets, not the repository files.
    lags = store.get_feature_view("city_demand_lags").batch_source
    assert lags.path.startswith(str(offline_dir(feature_store.feast_dir(settings))))


def test_mixed_unit_ttl_is_refused_naming_file_object_and_fix(tmp_path: Path) -> None:
    settings = _copy(tmp_path)
    store = feature_store.apply(settings)
    path = _edit(settings, "bike_demand.py", "ttl=timedelta(hours=2)", "ttl=timedelta(hours=36)")
    for dry_run in (True, False):
        with pytest.raises(FeatureDefinitionRefused) as info:
            feature_store.apply_repo(settings, store, dry_run=dry_run)
        message = str(info.value)
        assert str(path) in message and "feature view 'city_demand_lags'" in message
        assert "timedelta(hours=36)" in message and "DuckDB" in message
        assert "timedelta(days=1)" in message and "timedelta(days=2)" in message
        assert info.value.http_status == 422
    # Nothing was applied: the registry keeps the old TTL.
    assert store.get_feature_view("city_demand_lags").ttl == timedelta(hours=2)
    # `up` runs the same apply, and fails the same way.
    with pytest.raises(FeatureDefinitionRefused, match="timedelta\\(hours=36\\)"):
        feature_store.apply(settings)


def test_every_problem_is_listed_at_once(tmp_path: Path) -> None:
    settings = _copy(tmp_path)
    _edit(settings, "credit_default.py", "ttl=timedelta(0)", "ttl=timedelta(days=-1)")
    _edit(
        settings,
        "bike_demand.py",
        '"loopstack.label_source": "bike_demand_labels"',
        '"loopstack.label_source": "bike_labels"',
    )
    with pytest.raises(FeatureDefinitionRefused) as info:
        feature_store.apply_repo(settings)
    message = str(info.value)
    assert "(2 problems)" in message
    assert "credit_default.py: feature view 'customer_credit': ttl -1 day" in message
    assert "negative" in message
    assert "bike_demand.py: feature service 'bike_demand_v1'" in message
    assert "'bike_labels' names no FileSource" in message and "bike_demand_labels" in message


def test_a_definition_that_does_not_import_is_refused(tmp_path: Path) -> None:
    settings = _copy(tmp_path)
    path = _edit(settings, "bike_demand.py", "ttl=timedelta(hours=2),", "ttl=timedelta(hours=2,")
    with pytest.raises(FeatureDefinitionRefused, match=f"{path} failed to import"):
        feature_store.apply_repo(settings, dry_run=True)


@pytest.mark.parametrize(
    "ttl",
    [
        timedelta(0),
        timedelta(hours=2),
        timedelta(hours=23, minutes=59),
        timedelta(seconds=1, microseconds=5),
        timedelta(days=2),
        timedelta(days=366),
    ],
)
def test_ttls_duckdb_takes_pass(ttl: timedelta) -> None:
    assert ttl_problem(ttl, "duckdb") is None


@pytest.mark.parametrize(
    "ttl", [timedelta(hours=36), timedelta(days=1, seconds=1), timedelta(days=7, microseconds=1)]
)
def test_ttls_mixing_days_and_seconds_fail_in_duckdb_only(ttl: timedelta) -> None:
    import ibis

    # The check mirrors the engine: should ibis learn mixed units, this test says so.
    with pytest.raises(ValueError, match="mixed units"):
        ibis.literal(ttl)
    assert "whole days" in (ttl_problem(ttl, "duckdb") or "")
    assert ttl_problem(ttl, "file") is None


def test_the_api_plans_applies_and_refuses_with_422(tmp_path: Path) -> None:
    settings = _copy(tmp_path)
    with TestClient(create_app(settings)) as client:
        plan = client.post("/v1/features/apply", json={"dry_run": True})
        assert plan.status_code == 200, plan.text
        assert plan.json()["applied"] is False
        assert {"action": "add", "kind": "feature view", "name": "customer_credit",
                "properties": []} in plan.json()["changes"]  # fmt: skip
        applied = client.post("/v1/features/apply", json={})
        assert applied.status_code == 200 and applied.json()["applied"] is True
        assert client.post("/v1/features/apply", json={}).json()["changes"] == []

        path = _edit(settings, "bike_demand.py", "timedelta(hours=2)", "timedelta(hours=26)")
        refused = client.post("/v1/features/apply", json={})
        assert refused.status_code == 422
        assert (
            str(path) in refused.json()["error"] and "timedelta(days=1)" in refused.json()["error"]
        )


def test_the_cli_shows_the_plan_applies_and_exits_2_on_a_refusal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(features_cli.console, "width", 250)  # the test's terminal is narrow
    settings = _copy(tmp_path)
    app = FastAPI()
    install_error_handlers(app)
    services = SimpleNamespace(settings=settings, feature_store=feature_store.open_store(settings))
    app.include_router(router(services))  # type: ignore[arg-type]
    with asgi_server(app) as url:
        cli = typer.Typer()

        @cli.callback()
        def main(ctx: typer.Context) -> None:
            ctx.obj = settings.model_copy(
                update={"api": settings.api.model_copy(update={"url": url})}
            )

        cli.add_typer(features_cli.app, name="features")
        runner = CliRunner()
        planned = runner.invoke(cli, ["features", "apply", "--dry-run"])
        assert planned.exit_code == 0, planned.output
        assert "+ feature view city_demand_lags" in planned.output
        assert "dry run: 11 change(s) would be applied; nothing changed" in planned.output
        applied = runner.invoke(cli, ["features", "apply"])
        assert applied.exit_code == 0 and "applied 11 change(s)" in applied.output
        _edit(settings, "bike_demand.py", "ttl=timedelta(hours=2)", "ttl=timedelta(hours=4)")
        changed = runner.invoke(cli, ["features", "apply", "--dry-run"])
        assert "~ feature view city_demand_lags (ttl)" in changed.output
        _edit(settings, "bike_demand.py", "ttl=timedelta(hours=4)", "ttl=timedelta(hours=30)")
        refused = runner.invoke(cli, ["features", "apply"])
        assert refused.exit_code == 2
        assert "bike_demand.py" in refused.output and "timedelta(days=1)" in refused.output

"""Alert rules: promtool checks them and runs their unit tests; every alert is tested both ways."""

from __future__ import annotations

from collections import defaultdict

import pytest
import yaml

from tests.charts.tools import CHART, run, tool

ALERTS = CHART / "files" / "alerts"
RULES = ALERTS / "loopstack.rules.yaml"
TESTS = sorted((ALERTS / "tests").glob("*_test.yaml"))


@pytest.mark.integration
def test_promtool_check_rules() -> None:
    done = run(tool("promtool"), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_promtool_test_rules() -> None:
    done = run(tool("promtool"), "test", "rules", *map(str, TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    alerts = {
        r["alert"]
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    }
    cases: dict[str, set[bool]] = defaultdict(set)
    for file in TESTS:
        for test in yaml.safe_load(file.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases[case["alertname"]].add(bool(case.get("exp_alerts")))
    missing = {a: {True, False} - cases[a] for a in alerts if cases[a] != {True, False}}
    assert not missing, f"alerts without a firing (True) or non-firing (False) case: {missing}"


def test_rule_tests_load_the_chart_rule_file() -> None:
    for file in TESTS:
        (rule_file,) = yaml.safe_load(file.read_text())["rule_files"]
        assert (file.parent / rule_file).resolve() == RULES, file.name

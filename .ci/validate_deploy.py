"""Validates deploy/ without a Docker engine or a Kubernetes cluster; run by .ci/validate-deploy.

What is checked, and with what:
- the Helm chart (deploy/helm/switchyard): `helm lint --strict` and rendering with Helm v4's own
  engine (PyPI helm-python-sdk, Helm's Go SDK behind a C ABI: no `helm` binary) for the default
  values and every deploy/helm/switchyard/ci/*-values.yaml; every rendered object against the
  Kubernetes 1.25 (the chart's minimum) and 1.31 OpenAPI schemas in strict mode (PyPI kubernetes-validate: unknown fields fail);
  the ServiceMonitor against .ci/schemas/servicemonitor-monitoring.coreos.com-v1.json (a subset of
  the Prometheus Operator CRD's schema); then how the objects fit together (selectors, ports,
  Secret and ConfigMap references, probes, security contexts, SWITCHYARD_NODE_COUNT, the
  metrics token: both planes' env and the ServiceMonitors' `authorization` from the Secret);
- the chart's guards: values it must refuse;
- deploy/docker-compose.yml against the Compose Specification JSON schema shipped in PyPI
  docker-compose 1.29.2 (compose/config/compose_spec.json), plus the setup's own rules;
- deploy/prometheus/prometheus.yml (scrape targets, the metrics token file, and the compose
  entrypoint that writes that file, run with a stub Prometheus), deploy/grafana/provisioning/**,
  the dashboard
  deploy/grafana/dashboards/switchyard.json (panels, datasource variable, metric names from the
  catalog);
- deploy/Dockerfile (parsed with BuildKit's parser, PyPI dockerfile) and /.dockerignore; the
  image's health-check script runs against a local HTTP server;
- canaries: a broken manifest and a broken Compose file must be refused, so a validator that
  accepts everything cannot pass.

Prints one line per check and exits non-zero when any fails.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import tomllib
import traceback
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import dockerfile
import helm_python as helm
import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "switchyard"
# The newest Kubernetes the schemas are pinned to, and the oldest the chart claims (Chart.yaml
# kubeVersion >=1.25): every manifest must validate against both.
KUBE_VERSIONS = ["1.25.0", "1.31.0"]
KUBE_VERSION = KUBE_VERSIONS[-1]
RELEASE = "switchyard"
NAMESPACE = "switchyard"
SERVICE_MONITOR_SCHEMA = ROOT / ".ci" / "schemas" / "servicemonitor-monitoring.coreos.com-v1.json"

# The metric catalog: every name a dashboard may use, read from the one table both planes
# record with (`CATALOG` in data-plane/src/metrics_registry.rs; `counter(…)`, `gauge(…)` and
# `seconds(…)` entries, the last being histograms, used as <name>_bucket / _sum / _count).
def _catalog() -> tuple[set[str], set[str]]:
    source = (ROOT / "data-plane" / "src" / "metrics_registry.rs").read_text()
    table = source[source.index("pub static CATALOG"):source.index("pub fn find(")]
    entries = re.findall(r'\b(counter|gauge|seconds)\(\s*"(switchyard_[a-z0-9_]+)"', table)
    return {n for _, n in entries}, {n for k, n in entries if k == "seconds"}


METRICS, HISTOGRAMS = _catalog()
# Panels the dashboard must have (issue 13's list), by title.
REQUIRED_PANELS = [
    "Requests by endpoint", "Errors by class", "Request duration p50 / p95 / p99",
    "Time to first token p50 / p95 / p99", "Gateway overhead p50 / p99", "Tokens by kind",
    "Cost rate by model (USD / hour)", "Budget refusals", "Rate-limit refusals",
    "Open or half-open breakers", "Usage pipeline lag", "Usage events queued and spooled",
    "Config age per node", "Redis pool connections", "Database pool connections",
    "API latency p50 / p95 / p99",
]
COMPOSE_SECRETS = ["SWITCHYARD_MASTER_KEY", "SWITCHYARD_JWT_SECRET", "POSTGRES_PASSWORD",
                   "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "SWITCHYARD_METRICS_TOKEN"]
METRICS_TOKEN = "SWITCHYARD_METRICS_TOKEN"


class CheckError(Exception):
    """A failed expectation; the message says what and where."""


def expect(condition: Any, message: str) -> None:
    if not condition:
        raise CheckError(message)


RESULTS: list[tuple[str, str | None]] = []


def check(name: str, fn: Callable[[], str | None]) -> None:
    """Runs one check and prints `ok` or `FAIL` with the reason (and a detail when given)."""
    try:
        detail = fn()
    except CheckError as e:
        RESULTS.append((name, str(e)))
        print(f"FAIL {name}: {e}", flush=True)
        return
    except Exception as e:  # a crash is a failure too, with its trace
        RESULTS.append((name, repr(e)))
        print(f"FAIL {name}: {e!r}", flush=True)
        traceback.print_exc()
        return
    RESULTS.append((name, None))
    print(f"ok   {name}" + (f" ({detail})" if detail else ""), flush=True)


# ================================================================================ Helm chart


def values_cases() -> list[tuple[str, dict[str, Any] | None]]:
    cases: list[tuple[str, dict[str, Any] | None]] = [("default values", None)]
    for path in sorted((CHART / "ci").glob("*-values.yaml")):
        cases.append((f"ci/{path.name}", yaml.safe_load(path.read_text())))
    return cases


def lint(values: dict[str, Any] | None) -> str:
    report = helm.lint(str(CHART), values, strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [
        {"path": "", "error": e} for e in report["errors"]]
    expect(not problems, "; ".join(f"{m['path']}: {m['error'].strip()}" for m in problems))
    return f"{len(report['messages'])} info message(s)"


def render(chart: helm.Chart, values: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Renders like `helm template` (values checked against values.schema.json first) and returns
    every object, each with its template in `__template__`."""
    chart.validate_schema(values)
    rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            expect(text.strip(), "NOTES.txt rendered empty")
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            expect(isinstance(doc, dict), f"{template}: a document is not a mapping")
            doc["__template__"] = template
            objects.append(doc)
    expect(objects, "the chart rendered no object")
    return objects


def strip(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "__template__"}


def validate_kube(objects: list[dict[str, Any]], version: str = KUBE_VERSION) -> str:
    sm_schema = json.loads(SERVICE_MONITOR_SCHEMA.read_text())
    counts: dict[str, int] = {}
    for obj in objects:
        where = f"{obj['__template__']}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        if obj.get("apiVersion") == "monitoring.coreos.com/v1":
            expect(obj.get("kind") == "ServiceMonitor", f"{where}: unexpected CRD kind")
            errors = sorted(jsonschema.Draft202012Validator(sm_schema).iter_errors(strip(obj)),
                            key=lambda e: list(e.absolute_path))
            expect(not errors, f"{where}: " + "; ".join(
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors))
        else:
            try:
                kubernetes_validate.validate(strip(obj), version, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise CheckError(f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}") from e
            except kubernetes_validate.SchemaNotFoundError as e:
                raise CheckError(f"{where}: {e.message}") from e
        counts[obj["kind"]] = counts.get(obj["kind"], 0) + 1
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def duration_s(text: str) -> int:
    return int(text)


def check_rendered(objects: list[dict[str, Any]], values: dict[str, Any]) -> str:
    """How the rendered objects fit together, and the chart's operational promises."""
    deployments = by_kind(objects, "Deployment")
    services = by_kind(objects, "Service")
    configmaps = by_kind(objects, "ConfigMap")
    secrets = by_kind(objects, "Secret")
    hpas = by_kind(objects, "HorizontalPodAutoscaler")
    pdbs = by_kind(objects, "PodDisruptionBudget")
    ingresses = by_kind(objects, "Ingress")
    monitors = by_kind(objects, "ServiceMonitor")
    v = values

    cp_name = f"{RELEASE}-control-plane"
    dp_name = f"{RELEASE}-data-plane"
    expect(set(deployments) == {cp_name, dp_name}, f"Deployments are {sorted(deployments)}")
    secret_name = RELEASE if v["secrets"]["create"] or not v["secrets"]["existingSecret"] \
        else v["secrets"]["existingSecret"]
    expect(bool(secrets) == bool(v["secrets"]["create"]), "a Secret is rendered exactly when secrets.create")
    token_on = bool(v["secrets"].get("metricsToken")) if v["secrets"]["create"] \
        else bool(v["metrics"].get("tokenFromSecret"))
    token_ref = {"name": secret_name, "key": METRICS_TOKEN}
    for cm_name, cm in configmaps.items():
        expect(METRICS_TOKEN not in cm.get("data", {}), f"ConfigMap {cm_name} holds the metrics token")

    for name, dep in deployments.items():
        spec = dep["spec"]
        pod = spec["template"]
        labels = pod["metadata"]["labels"]
        expect(matches(spec["selector"]["matchLabels"], labels), f"{name}: selector does not match its pods")
        pspec = pod["spec"]
        psc = pspec.get("securityContext", {})
        expect(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 10001,
               f"{name}: pod must run as non-root uid 10001")
        expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp RuntimeDefault")
        expect(pspec.get("automountServiceAccountToken") is False, f"{name}: service account token mounted")
        expect("checksum/config" in pod["metadata"].get("annotations", {}), f"{name}: no checksum/config")
        if v["secrets"]["create"]:
            expect("checksum/secret" in pod["metadata"]["annotations"], f"{name}: no checksum/secret")
        (container,) = pspec["containers"]
        csc = container.get("securityContext", {})
        expect(csc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only")
        expect(csc.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation allowed")
        expect(csc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities not all dropped")
        expect(container["livenessProbe"]["httpGet"]["path"] == "/healthz", f"{name}: liveness is not /healthz")
        expect(container["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}: readiness is not /readyz")
        expect("startupProbe" in container, f"{name}: no startupProbe")
        res = container.get("resources", {})
        expect(res.get("requests", {}).get("memory") and res.get("limits", {}).get("memory"),
               f"{name}: memory request and limit required")
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        volumes = {vol["name"] for vol in pspec.get("volumes", [])}
        for path in ("/var/lib/switchyard", "/tmp"):
            expect(path in mounts and mounts[path] in volumes, f"{name}: {path} is not a mounted volume")
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        expect("http" in ports, f"{name}: no port named http")
        env = env_of(container)
        if token_on:
            # Not optional: a Secret without the key must stop the pod, not open /metrics.
            expect(env.get(METRICS_TOKEN, {}).get("valueFrom", {}).get("secretKeyRef") == token_ref,
                   f"{name}: {METRICS_TOKEN} is not the Secret's key {token_ref} (non-optional)")
        else:
            expect(METRICS_TOKEN not in env, f"{name}: {METRICS_TOKEN} set although no token is configured")
        node_id = env.get("SWITCHYARD_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {})
        expect(node_id.get("fieldPath") == "metadata.name", f"{name}: SWITCHYARD_NODE_ID is not the pod name")
        for e in env.values():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                expect(ref["name"] == secret_name, f"{name}: {e['name']} reads Secret {ref['name']}, not {secret_name}")
                if secrets and not ref.get("optional"):
                    expect(ref["key"] in secrets[secret_name]["stringData"],
                           f"{name}: Secret {secret_name} has no key {ref['key']}")
        cm_refs = [s["configMapRef"]["name"] for s in container.get("envFrom", []) if "configMapRef" in s]
        expect(cm_refs and all(c in configmaps for c in cm_refs), f"{name}: envFrom names a missing ConfigMap")
        cm = configmaps[cm_refs[0]]["data"]
        expect(cm["SWITCHYARD_LISTEN"].endswith(f":{ports['http']}"), f"{name}: listens elsewhere than its port")
        expect(cm["SWITCHYARD_DATA_DIR"] == "/var/lib/switchyard", f"{name}: data dir is not the mounted volume")
        grace = int(cm["SWITCHYARD_SHUTDOWN_GRACE_SECONDS"])
        sleep = 0
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
        if pre_stop:
            expect(pre_stop[0] == "sleep", f"{name}: preStop is not a sleep")
            sleep = int(pre_stop[1])
        expect(pspec["terminationGracePeriodSeconds"] > grace + sleep,
               f"{name}: terminationGracePeriodSeconds {pspec['terminationGracePeriodSeconds']} "
               f"is not above shutdown grace {grace} + preStop {sleep}")
        if name == dp_name:
            expect(not {"DATABASE_URL", "SWITCHYARD_JWT_SECRET", "STRIPE_SECRET_KEY"} & set(env),
                   f"{name}: the data plane gets control-plane secrets")
            expect({"REDIS_URL", "SWITCHYARD_MASTER_KEY"} <= set(env), f"{name}: REDIS_URL / master key missing")
            node_count = int(cm["SWITCHYARD_NODE_COUNT"])
            dpv = v["dataPlane"]
            if dpv["autoscaling"]["enabled"]:
                expect("replicas" not in spec, f"{name}: replicas set although the HPA owns them")
                (hpa,) = hpas.values()
                expect(hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                       "HPA does not target the data-plane Deployment")
                resources_ = [m["resource"]["name"] for m in hpa["spec"]["metrics"]]
                expect("cpu" in resources_, "HPA has no CPU metric")
                if dpv["autoscaling"].get("targetMemoryUtilizationPercentage"):
                    expect("memory" in resources_, "HPA has no memory metric")
                expect(res.get("requests", {}).get("cpu"), f"{name}: HPA on CPU needs a CPU request")
                expected = dpv["nodeCount"] or hpa["spec"]["minReplicas"]
            else:
                expect(not hpas, "an HPA without autoscaling.enabled")
                expected = dpv["nodeCount"] or spec["replicas"]
            expect(node_count == expected, f"SWITCHYARD_NODE_COUNT is {node_count}, expected {expected}")
        else:
            expect({"DATABASE_URL", "REDIS_URL", "SWITCHYARD_MASTER_KEY", "SWITCHYARD_JWT_SECRET"} <= set(env),
                   f"{name}: a required secret is not passed")

    pod_labels = {n: d["spec"]["template"]["metadata"]["labels"] for n, d in deployments.items()}
    pod_ports = {n: {p["name"] for p in d["spec"]["template"]["spec"]["containers"][0]["ports"]}
                 for n, d in deployments.items()}
    for name, svc in services.items():
        targets = [n for n, labels in pod_labels.items() if matches(svc["spec"]["selector"], labels)]
        expect(len(targets) == 1, f"Service {name} selects {targets}")
        for port in svc["spec"]["ports"]:
            expect(port["targetPort"] in pod_ports[targets[0]], f"Service {name}: no container port {port['targetPort']}")
    for name, pdb in pdbs.items():
        expect(any(matches(pdb["spec"]["selector"]["matchLabels"], l) for l in pod_labels.values()),
               f"PodDisruptionBudget {name} selects no pods")
    expect((dp_name in pdbs) == v["dataPlane"]["podDisruptionBudget"]["enabled"], "data-plane PDB presence")
    for name, ing in ingresses.items():
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                backend = p["backend"]["service"]
                expect(backend["name"] in services, f"Ingress {name}: no Service {backend['name']}")
                svc_ports = {sp["name"] for sp in services[backend["name"]]["spec"]["ports"]}
                expect(backend["port"]["name"] in svc_ports, f"Ingress {name}: Service has no port {backend['port']}")
                if backend["name"] == dp_name:
                    expect(p["path"] == v["ingress"]["gateway"]["path"], f"Ingress {name}: gateway path")
        for tls in ing["spec"].get("tls", []):
            expect(tls.get("secretName") and tls.get("hosts"), f"Ingress {name}: TLS without secret or hosts")
    if v["ingress"]["enabled"]:
        expect(len(ingresses) == bool(v["ingress"]["gateway"]["host"]) + bool(v["ingress"]["console"]["host"]),
               "one Ingress per host")
    else:
        expect(not ingresses, "Ingress rendered although ingress.enabled is false")
    for name, sm in monitors.items():
        selected = [s for s in services.values() if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        expect(len(selected) == 1, f"ServiceMonitor {name} selects {len(selected)} Services")
        expect(sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in selected[0]["spec"]["ports"]},
               f"ServiceMonitor {name}: the Service has no such port")
        expect(sm["spec"]["endpoints"][0]["path"] == "/metrics", f"ServiceMonitor {name}: path")
        auth = sm["spec"]["endpoints"][0].get("authorization")
        if token_on:
            expect(auth == {"type": "Bearer", "credentials": token_ref},
                   f"ServiceMonitor {name}: authorization is {auth}, not the Secret's {METRICS_TOKEN}")
            # The Operator reads the credentials' Secret in the ServiceMonitor's namespace.
            expect(sm["metadata"]["namespace"] == NAMESPACE,
                   f"ServiceMonitor {name}: not in the Secret's namespace {NAMESPACE}")
        else:
            expect(auth is None, f"ServiceMonitor {name}: authorization without a metrics token")
    expect(len(monitors) == (2 if v["metrics"]["serviceMonitor"]["enabled"] else 0), "ServiceMonitor count")
    return f"{len(objects)} objects fit together" + (", metrics token on" if token_on else "")


# Keys below these are plain Kubernetes fields (requests, limits, ...) documented by their parent.
PASSTHROUGH_VALUES = {"resources", "strategy", "startup", "liveness", "readiness"}


def values_documented() -> str:
    """Every key of values.yaml has a comment right above it (or sits under a documented
    Kubernetes object), and values.schema.json describes every key."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    schema = json.loads((CHART / "values.schema.json").read_text())
    stack: list[tuple[int, str, bool]] = []
    undocumented, unschemed = [], []
    prev = ""
    keys = 0
    for number, line in enumerate(lines, 1):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if m:
            indent, key = len(m.group(1)), m.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            documented = prev.strip().startswith("#")
            if not documented and not any(k in PASSTHROUGH_VALUES and d for _, k, d in stack):
                undocumented.append(f"line {number} {key}")
            node = schema
            for _, k, _ in stack:
                node = node.get("properties", {}).get(k, {})
            if node.get("properties") is not None and key not in node["properties"]:
                unschemed.append(".".join([k for _, k, _ in stack] + [key]))
            stack.append((indent, key, documented))
            keys += 1
        if line.strip():
            prev = line
    expect(not undocumented, f"values without a comment: {undocumented}")
    expect(not unschemed, f"values missing from values.schema.json: {unschemed}")
    return f"{keys} keys"


def chart_checks() -> None:
    chart = helm.Chart.load(str(CHART))
    check("helm: every value in values.yaml is commented and in values.schema.json", values_documented)
    check("helm: chart loads (apiVersion v2)", lambda: expect(
        chart.metadata.get("apiVersion") == "v2", "Chart.yaml apiVersion is not v2") or
        f"Helm SDK {helm.helm_sdk_version()}, chart {chart.name} {chart.version}")
    for label, values in values_cases():
        check(f"helm lint --strict, {label}", lambda values=values: lint(values))
        state: dict[str, Any] = {}

        def do_render(values=values, state=state) -> str:
            state["objects"] = render(chart, values)
            state["values"] = chart.merge_values(values)
            return f"{len(state['objects'])} objects"

        check(f"helm template, {label}", do_render)
        if "objects" not in state:
            continue
        for version in KUBE_VERSIONS:
            check(f"kubernetes {version} schemas (strict), {label}",
                  lambda state=state, version=version: validate_kube(state["objects"], version))
        check(f"chart wiring, {label}", lambda state=state: check_rendered(state["objects"], state["values"]))

    def token_variants() -> str:
        """The metrics token off with ServiceMonitors on, and on through each kind of Secret
        (check_rendered checks the env and the ServiceMonitors' authorization each time)."""
        created = next(v for label, v in values_cases() if label.endswith("created-secret-values.yaml"))
        variants = {
            "off": {"metrics": {"serviceMonitor": {"enabled": True}}},
            "existing Secret": {"secrets": {"create": False, "existingSecret": "mine"},
                                "metrics": {"tokenFromSecret": True, "serviceMonitor": {"enabled": True}}},
            "chart Secret": created,
        }
        seen = []
        for label, values in variants.items():
            objects = render(chart, values)
            validate_kube(objects)
            detail = check_rendered(objects, chart.merge_values(values))
            expect(("metrics token on" in detail) == (label != "off"), f"{label}: {detail}")
            monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
            expect(len(monitors) == 2, f"{label}: {len(monitors)} ServiceMonitors")
            seen.append(label)
        return ", ".join(seen)

    check("helm: metrics token off / from an existing Secret / from the chart's Secret", token_variants)

    def notes(values: dict[str, Any]) -> str:
        rendered = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
        return next(text for template, text in rendered.items() if template.endswith("NOTES.txt"))

    def console_warning() -> str:
        console = {"ingress": {"enabled": True, "console": {"host": "console.example.com"}}}
        expect("WARNING: /metrics needs no token" in notes(console),
               "NOTES.txt does not warn about an open /metrics behind the console Ingress")
        with_token = {**console, "secrets": {"create": False}, "metrics": {"tokenFromSecret": True}}
        expect("WARNING" not in notes(with_token), "NOTES.txt warns although a token is set")
        return "warned without a token, quiet with one"

    check("helm: NOTES.txt warns when the console Ingress exposes an open /metrics", console_warning)

    full = next(v for label, v in values_cases() if label.endswith("full-values.yaml"))
    check("helm: the all-on values render every template", lambda: expect(
        {"Ingress", "ServiceMonitor", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <=
        {o["kind"] for o in render(chart, full)}, "a template stayed off"))

    def must_refuse(values: dict[str, Any], needle: str) -> Callable[[], str]:
        def run() -> str:
            try:
                render(chart, values)
            except helm.HelmError as e:
                expect(needle in str(e), f"refused, but the message lacks {needle!r}: {e}")
                return "refused"
            raise CheckError("rendered although it must be refused")
        return run

    check("helm guard: secrets.create without a master key", must_refuse(
        {"secrets": {"create": True, "jwtSecret": "x" * 40, "databaseUrl": "postgres://h/db",
                     "redisUrl": "redis://h"}}, "secrets.masterKey is required"))
    check("helm guard: termination grace not above the shutdown deadline", must_refuse(
        {"dataPlane": {"terminationGracePeriodSeconds": 30}}, "terminationGracePeriodSeconds"))
    check("helm guard: a secret in dataPlane.env", must_refuse(
        {"dataPlane": {"env": {"REDIS_URL": "redis://h"}}}, "secrets belong in the Secret"))
    check("helm guard: values.schema.json refuses an unknown key", must_refuse(
        {"dataPlan": {"replicaCount": 3}}, "dataPlan"))
    check("helm guard: values.schema.json refuses a wrong type", must_refuse(
        {"dataPlane": {"replicaCount": "two"}}, "replicaCount"))
    check("helm guard: HPA min above max", must_refuse(
        {"dataPlane": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, "minReplicas"))
    check("helm guard: secrets.metricsToken with an existing Secret (would be ignored)", must_refuse(
        {"secrets": {"create": False, "metricsToken": "t"}}, "metrics.tokenFromSecret=true"))
    check("helm guard: metrics.tokenFromSecret with a chart Secret but no token", must_refuse(
        {"secrets": {"create": True, "masterKey": "k", "jwtSecret": "j", "databaseUrl": "postgres://h/d",
                     "redisUrl": "redis://h"}, "metrics": {"tokenFromSecret": True}}, "needs secrets.metricsToken"))
    check("helm guard: metrics token with ServiceMonitors outside the Secret's namespace", must_refuse(
        {"metrics": {"tokenFromSecret": True, "serviceMonitor": {"enabled": True, "namespace": "monitoring"}}},
        "must be empty or the release namespace"))
    check("helm guard: the metrics token in controlPlane.env (a ConfigMap)", must_refuse(
        {"controlPlane": {"env": {METRICS_TOKEN: "t"}}}, "secrets belong in the Secret"))

    def canary() -> str:
        objects = render(chart, None)
        dep = next(o for o in objects if o["kind"] == "Deployment")
        broken = copy.deepcopy(dep)
        broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
        try:
            validate_kube([broken])
        except CheckError as e:
            expect("imagePullPolcy" in str(e), f"refused for another reason: {e}")
            return "a misspelt field is refused"
        raise CheckError("kubernetes-validate accepted a Deployment with an unknown field")

    check("canary: a broken manifest fails validation", canary)

    def monitor_canary() -> str:
        created = next(v for label, v in values_cases() if label.endswith("created-secret-values.yaml"))
        monitor = next(o for o in render(chart, created) if o["kind"] == "ServiceMonitor")
        expect("authorization" in monitor["spec"]["endpoints"][0], "no authorization to break")
        breakages = {
            "credentials.nmae": lambda ep: ep["authorization"]["credentials"].update(nmae="x"),
            "authorizaton": lambda ep: ep.update(authorizaton=ep["authorization"]),
            "credentials without key": lambda ep: ep["authorization"]["credentials"].pop("key"),
            "type Basic": lambda ep: ep["authorization"].update(type="Basic"),
        }
        for label, breaker in breakages.items():
            broken = copy.deepcopy(monitor)
            breaker(broken["spec"]["endpoints"][0])
            try:
                validate_kube([broken])
            except CheckError:
                continue
            raise CheckError(f"the ServiceMonitor schema accepted {label}")
        return f"{len(breakages)} broken authorizations refused"

    check("canary: a broken ServiceMonitor authorization fails validation", monitor_canary)


# ================================================================================ Compose


def compose_schema() -> dict[str, Any]:
    ref = resources.files("compose") / "config" / "compose_spec.json"
    return json.loads(ref.read_text())


def validate_compose_schema(doc: dict[str, Any]) -> None:
    schema = compose_schema()
    # Its $schema names draft 2019-09 with a URL jsonschema does not know (http, trailing #).
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    expect(not errors, "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]))


VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable syntax: ${VAR}, ${VAR:-default}, ${VAR:?message}, $$ for a literal $."""
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, arg = m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", "-"):
            return value if value else (arg or "")
        if op in (":?", "?"):
            if not value:
                raise CheckError(f"${{{name}}} is required: {arg}")
            return value
        return value or ""
    return VAR.sub(sub, text)


def compose_checks() -> None:
    path = DEPLOY / "docker-compose.yml"
    text = path.read_text()
    doc = yaml.safe_load(text)
    check("compose: Compose Specification schema (docker-compose 1.29.2's compose_spec.json)",
          lambda: validate_compose_schema(doc))

    def strings(node: Any) -> list[str]:
        """Every string value of the file: Compose interpolates values, not comments."""
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in strings(k) + strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    def secrets_required() -> str:
        for m in VAR.finditer("\n".join(strings(doc))):
            name, op = m.group(1), m.group(2)
            if m.group(4):
                raise CheckError(f"${m.group(4)} without braces")
            if name in COMPOSE_SECRETS:
                expect(op == ":?", f"${{{name}}} must be written ${{{name}:?message}}")
        for name in COMPOSE_SECRETS:
            expect(f"${{{name}:?" in text, f"{name} is not required anywhere")
            try:
                interpolate(text, {n: "x" for n in COMPOSE_SECRETS if n != name})
            except CheckError as e:
                expect(name in str(e), f"unexpected: {e}")
                continue
            raise CheckError(f"compose interpolates without {name}")
        return f"{len(COMPOSE_SECRETS)} secrets required with ${{VAR:?message}}"

    check("compose: secrets come from the environment and are required", secrets_required)

    def quick_start() -> str:
        readme = (DEPLOY / "README.md").read_text()
        for where, source in (("docker-compose.yml", text), ("deploy/README.md", readme)):
            for name in COMPOSE_SECRETS:
                expect(re.search(rf"^[#\s]*{name}=\$\(openssl rand ", source, re.M),
                       f"{where}: the quick start's .env does not generate {name}")
        return "the header and deploy/README.md generate every required secret"

    check("compose: the quick start's .env sets every required secret", quick_start)

    def semantics() -> str:
        env = {n: "x" for n in COMPOSE_SECRETS}
        resolved = yaml.safe_load(interpolate(text, env))
        services = resolved["services"]
        declared = set(resolved.get("volumes") or {})
        for name, svc in services.items():
            deps = svc.get("depends_on") or []
            for dep in (deps if isinstance(deps, list) else deps.keys()):
                expect(dep in services, f"{name} depends on unknown service {dep}")
            for vol in svc.get("volumes", []):
                source = vol.split(":")[0] if isinstance(vol, str) else vol["source"]
                if source.startswith("."):
                    expect((DEPLOY / source).exists(), f"{name}: bind source {source} does not exist")
                else:
                    expect(source in declared, f"{name}: volume {source} is not declared")
        pg = services["postgres"]
        expect(pg.get("healthcheck"), "postgres has no healthcheck")
        expect(any(v.startswith("postgres-data:") for v in pg["volumes"]), "postgres has no named volume")
        expect("redis" in services and "prometheus" in services and "grafana" in services, "a service is missing")
        planes = {n: s for n, s in services.items() if isinstance(s.get("build"), dict)}
        dps = {n: s for n, s in planes.items() if s["build"].get("target") == "data-plane"}
        cps = {n: s for n, s in planes.items() if s["build"].get("target") == "control-plane"}
        expect(len(cps) == 1 and len(dps) >= 2, f"control planes {sorted(cps)}, data planes {sorted(dps)}")
        ids = [s["environment"]["SWITCHYARD_NODE_ID"] for s in dps.values()]
        expect(len(set(ids)) == len(ids), f"data-plane node ids are not unique: {ids}")
        data_volumes = []
        for name, s in {**cps, **dps}.items():
            expect(s.get("read_only") is True and s.get("user") == "10001:10001", f"{name}: not read-only as uid 10001")
            expect("/tmp" in (s.get("tmpfs") or []), f"{name}: no /tmp tmpfs")
            expect(s["build"]["context"] == ".." and s["build"]["dockerfile"] == "deploy/Dockerfile",
                   f"{name}: build context must be the repository root")
            mounts = [v for v in s.get("volumes", []) if v.split(":")[1] == "/var/lib/switchyard"]
            expect(len(mounts) == 1, f"{name}: no data volume")
            data_volumes.append(mounts[0].split(":")[0])
            expect("/readyz" in " ".join(s["healthcheck"]["test"]), f"{name}: health check is not /readyz")
            for key in ("SWITCHYARD_MASTER_KEY", "REDIS_URL"):
                expect(s["environment"].get(key), f"{name}: {key} missing")
        expect(len(set(data_volumes)) == len(data_volumes), "two nodes share a data volume (the spool is locked)")
        for name, s in dps.items():
            expect(int(s["environment"]["SWITCHYARD_NODE_COUNT"]) == len(dps),
                   f"{name}: SWITCHYARD_NODE_COUNT is not {len(dps)}")
            expect(s["depends_on"]["redis"]["condition"] == "service_healthy", f"{name}: must wait for Redis")
        (cp,) = cps.values()
        expect(cp["environment"]["DATABASE_URL"].startswith("postgres://"), "control plane DATABASE_URL")
        expect(cp["environment"].get("SWITCHYARD_JWT_SECRET"), "control plane JWT secret")
        expect(cp["depends_on"]["postgres"]["condition"] == "service_healthy", "control plane must wait for Postgres")
        return f"{len(services)} services, {len(dps)} data-plane nodes"

    check("compose: services, volumes, node ids and dependencies fit together", semantics)

    def canary() -> str:
        broken = copy.deepcopy(doc)
        broken["services"]["control-plane"]["healthchek"] = {"test": ["CMD", "true"]}
        try:
            validate_compose_schema(broken)
        except CheckError as e:
            expect("healthchek" in str(e), f"refused for another reason: {e}")
            return "a misspelt key is refused"
        raise CheckError("the Compose schema accepted an unknown service key")

    check("canary: a broken Compose file fails validation", canary)


# ================================================================================ Prometheus, Grafana


def prometheus_checks() -> None:
    def run() -> str:
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        compose = yaml.safe_load(interpolate((DEPLOY / "docker-compose.yml").read_text(),
                                             {n: "x" for n in COMPOSE_SECRETS}))["services"]
        targets: dict[str, list[str]] = {}
        for job in config["scrape_configs"]:
            expect(job.get("job_name"), "a scrape config has no job_name")
            for sc in job.get("static_configs", []):
                for t in sc["targets"]:
                    targets.setdefault(t, []).append(job.get("metrics_path", "/metrics"))
        wanted = {"control-plane:8080": "control-plane"}
        for name, svc in compose.items():
            if isinstance(svc.get("build"), dict) and svc["build"].get("target") == "data-plane":
                wanted[f"{name}:8081"] = "data-plane"
        for target in wanted:
            expect(target in targets, f"no scrape target {target}")
            expect(targets[target] == ["/metrics"], f"{target} is not scraped at /metrics")
            expect(target.split(":")[0] in compose, f"{target} is not a compose service")
        return f"{len(config['scrape_configs'])} jobs, targets {', '.join(sorted(wanted))}"

    check("prometheus: prometheus.yml is valid YAML and scrapes every plane", run)

    def token() -> str:
        """Every plane requires the metrics token, and Prometheus sends that same token: the
        switchyard jobs read it from a credentials file on a tmpfs, which the compose
        entrypoint writes from the environment before it starts Prometheus."""
        config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
        value = "token-from-the-environment"
        compose = yaml.safe_load(interpolate((DEPLOY / "docker-compose.yml").read_text(),
                                             {**{n: "x" for n in COMPOSE_SECRETS}, METRICS_TOKEN: value}))
        services = compose["services"]
        files = set()
        for job in config["scrape_configs"]:
            if not job["job_name"].startswith("switchyard-"):
                continue
            auth = job.get("authorization") or {}
            expect(auth.get("type", "Bearer") == "Bearer" and auth.get("credentials_file"),
                   f"job {job['job_name']}: no Bearer credentials_file")
            files.add(auth["credentials_file"])
        expect(len(files) == 1, f"the switchyard jobs read different token files: {sorted(files)}")
        (token_file,) = files
        for name, svc in services.items():
            if isinstance(svc.get("build"), dict):
                expect(svc["environment"].get(METRICS_TOKEN) == value, f"{name}: {METRICS_TOKEN} is not passed")
        prom = services["prometheus"]
        expect(prom["environment"].get(METRICS_TOKEN) == value, f"prometheus: {METRICS_TOKEN} is not passed")
        expect(str(Path(token_file).parent) in (prom.get("tmpfs") or []),
               f"prometheus: {Path(token_file).parent} is not a tmpfs (the token would be on disk)")
        shell, flag, script, arg0 = prom["entrypoint"]
        expect(shell == "/bin/sh" and flag == "-c", "prometheus: the entrypoint is not a /bin/sh -c script")
        expect("exec /bin/prometheus \"$@\"" in script, "prometheus: the script does not exec /bin/prometheus")
        # Run the script with a stub Prometheus, paths moved into a temp dir.
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            run_dir.mkdir()
            stub = Path(tmp) / "prometheus"
            stub.write_text("#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$STUB_OUT/args\"\n"
                            "env > \"$STUB_OUT/env\"\n")
            stub.chmod(0o755)
            moved = script.replace(str(Path(token_file).parent), str(run_dir)).replace("/bin/prometheus", str(stub))
            result = subprocess.run(["sh", "-c", moved, arg0, *prom["command"]], capture_output=True, timeout=10,
                                    env={"PATH": os.environ.get("PATH", ""), "STUB_OUT": tmp, METRICS_TOKEN: value})
            expect(result.returncode == 0, f"the entrypoint failed: {result.stderr.decode()}")
            written = run_dir / Path(token_file).name
            expect(written.read_text() == value, "the token file does not hold the token")
            expect(written.stat().st_mode & 0o077 == 0, "the token file is readable by others")
            args = (Path(tmp) / "args").read_text().splitlines()
            expect(args == prom["command"], f"Prometheus got {args}, not the compose command")
            expect(f"{METRICS_TOKEN}=" not in (Path(tmp) / "env").read_text(),
                   "the token stays in Prometheus' environment")
            missing = subprocess.run(["sh", "-c", moved, arg0], capture_output=True, timeout=10,
                                     env={"PATH": os.environ.get("PATH", ""), "STUB_OUT": tmp})
            expect(missing.returncode != 0, "the entrypoint starts Prometheus without a token")
        return f"{token_file}, written by the entrypoint and read by both jobs"

    check("prometheus: both planes require the metrics token and Prometheus sends it", token)


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bswitchyard_[a-z0-9_]+", expr))


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def grafana_checks() -> None:
    path = DEPLOY / "grafana" / "dashboards" / "switchyard.json"

    def dashboard() -> str:
        dash = json.loads(path.read_text())
        expect(dash.get("uid") and dash.get("title"), "no uid or title")
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        ds = variables.get("datasource")
        expect(ds and ds["type"] == "datasource" and ds["query"] == "prometheus",
               "no ${datasource} variable of type datasource (prometheus)")
        ids, titles, used = set(), set(), set()
        panels = [p for p in dash["panels"] if p["type"] != "row"]
        for p in dash["panels"]:
            expect(p["id"] not in ids, f"duplicate panel id {p['id']}")
            ids.add(p["id"])
            g = p["gridPos"]
            expect(0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"panel {p['title']}: bad gridPos")
        for p in panels:
            titles.add(p["title"])
            expect(p["datasource"] == {"type": "prometheus", "uid": "${datasource}"},
                   f"panel {p['title']}: datasource is not ${{datasource}}")
            expect(p.get("targets"), f"panel {p['title']}: no queries")
            for t in p["targets"]:
                expr = t["expr"]
                expect(t["datasource"]["uid"] == "${datasource}", f"panel {p['title']}: target datasource")
                expect(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
                       f"panel {p['title']}: unbalanced expression {expr}")
                names = metric_names(expr)
                expect(names, f"panel {p['title']}: {expr} names no switchyard_ metric")
                for name in names:
                    expect(base_name(name) in METRICS, f"panel {p['title']}: {name} is not in the metric catalog")
                    expect(name not in HISTOGRAMS, f"panel {p['title']}: histogram {name} used without _bucket/_sum/_count")
                used |= {base_name(n) for n in names}
                if "histogram_quantile" in expr:
                    expect("_bucket" in expr and re.search(r"by \([^)]*\ble\b", expr),
                           f"panel {p['title']}: histogram_quantile needs _bucket summed by le")
        for v in dash["templating"]["list"]:
            if v["type"] == "query":
                for name in metric_names(v["definition"]):
                    expect(base_name(name) in METRICS, f"variable {v['name']}: {name} is not in the catalog")
        missing = [t for t in REQUIRED_PANELS if t not in titles]
        expect(not missing, f"missing panels: {missing}")
        expect("switchyard_cost_microdollars_total" in used and "/ 1e6" in path.read_text(),
               "cost must be shown in dollars (/ 1e6)")
        return f"{len(panels)} panels, {len(used)} of {len(METRICS)} catalog metrics"

    check("grafana: dashboard JSON, panels, ${datasource}, catalog metric names", dashboard)

    def provisioning() -> str:
        prov = DEPLOY / "grafana" / "provisioning"
        ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())
        (source,) = ds["datasources"]
        expect(source["type"] == "prometheus" and source["url"] == "http://prometheus:9090",
               "the datasource is not the compose Prometheus")
        dashboards = yaml.safe_load((prov / "dashboards" / "switchyard.yml").read_text())
        (provider,) = dashboards["providers"]
        compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["grafana"]
        mounts = dict(v.split(":")[:2] for v in compose["volumes"])
        expect(mounts.get("./grafana/dashboards") == provider["options"]["path"],
               "the dashboards provider path is not where compose mounts deploy/grafana/dashboards")
        expect(mounts.get("./grafana/provisioning") == "/etc/grafana/provisioning", "provisioning is not mounted")
        return "datasource and dashboard provider"

    check("grafana: provisioning files match the compose mounts", provisioning)


# ================================================================================ Dockerfile


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; `!` re-includes; a pattern
    that matches a directory matches everything below it."""
    def to_regex(p: str) -> re.Pattern[str]:
        out = ""
        i = 0
        while i < len(p):
            if p.startswith("**/", i):
                out += "(?:.*/)?"
                i += 3
            elif p.startswith("**", i):
                out += ".*"
                i += 2
            elif p[i] == "*":
                out += "[^/]*"
                i += 1
            elif p[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(p[i])
                i += 1
        return re.compile(out + "(?:/.*)?$")

    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().lstrip("/").rstrip("/")
        if to_regex(pattern).match(path):
            excluded = not negate
    return excluded


def docker_checks() -> None:
    path = DEPLOY / "Dockerfile"
    commands = dockerfile.parse_file(str(path))

    def structure() -> str:
        stages: dict[str, list[Any]] = {}
        order: list[str] = []
        current = None
        parents: dict[str, str] = {}
        for c in commands:
            if c.cmd == "FROM":
                expect(len(c.value) == 3 and c.value[1].upper() == "AS", f"line {c.start_line}: unnamed stage")
                current = c.value[2]
                parents[current] = c.value[0]
                stages[current] = []
                order.append(current)
            elif current:
                stages[current].append(c)
        expect({"build", "runtime", "control-plane", "data-plane"} <= set(stages), f"stages: {order}")
        expect(order[-1] == "control-plane", "the default (last) target must be control-plane")
        build = " ".join(c.original for c in stages["build"] if c.cmd == "RUN")
        expect("cargo build" in build and "--locked" in build, "cargo build --locked missing")
        mounts = [f for c in stages["build"] if c.cmd == "RUN" for f in c.flags if f.startswith("--mount=type=cache")]
        expect(len(mounts) >= 2, "cargo build needs cache mounts (registry and target)")
        runtime = stages["runtime"]
        users = [c.value[0] for c in runtime if c.cmd == "USER"]
        expect(users == ["10001:10001"], f"runtime USER is {users}")
        expect(any(c.cmd == "VOLUME" and "/var/lib/switchyard" in " ".join(c.value) for c in runtime), "no VOLUME")
        expect(any(c.cmd == "ENV" and "SWITCHYARD_DATA_DIR" in c.value for c in runtime), "no SWITCHYARD_DATA_DIR")
        for target, binary, port in (("control-plane", "control-plane", "8080"), ("data-plane", "data-plane", "8081")):
            expect(parents[target] == "runtime", f"{target} does not build on the runtime stage")
            cmds = {c.cmd: c for c in stages[target]}
            expect("USER" not in cmds, f"{target} changes USER")
            expect(cmds["ENTRYPOINT"].value == (f"/usr/local/bin/{binary}",), f"{target}: ENTRYPOINT")
            expect(port in cmds["EXPOSE"].value, f"{target}: EXPOSE {port}")
            expect(cmds["HEALTHCHECK"].value[-1] == "/readyz", f"{target}: HEALTHCHECK is not /readyz")
            copied = [c for c in stages[target] if c.cmd == "COPY"]
            expect(len(copied) == 1 and copied[0].value[0] == f"/out/{binary}", f"{target} must ship only {binary}")
        return " → ".join(order)

    check("docker: Dockerfile stages, cache mounts, --locked, non-root, VOLUME, HEALTHCHECK", structure)

    def healthcheck_script() -> str:
        (cmd,) = [c for c in commands if c.cmd == "COPY" and c.heredocs]
        script = cmd.heredocs[0].content
        with tempfile.TemporaryDirectory() as tmp:
            script_path = Path(tmp) / "switchyard-healthcheck"
            script_path.write_text(script)
            subprocess.run(["bash", "-n", str(script_path)], check=True)

            class Handler(http.server.BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"  # as hyper answers an HTTP/1.1 request

                def do_GET(self) -> None:  # noqa: N802
                    self.send_response(200 if self.path == "/readyz" else 503)
                    self.send_header("content-length", "0")
                    self.end_headers()

                def log_message(self, *args: Any) -> None:
                    pass

            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            try:
                env = {**os.environ, "SWITCHYARD_LISTEN": f"0.0.0.0:{server.server_address[1]}"}
                ready = subprocess.run(["bash", str(script_path), "/readyz"], env=env, capture_output=True, timeout=10)
                failing = subprocess.run(["bash", str(script_path), "/other"], env=env, capture_output=True, timeout=10)
            finally:
                server.shutdown()
                server.server_close()
        expect(ready.returncode == 0, f"200 gave exit {ready.returncode}: {ready.stderr.decode()}")
        expect(failing.returncode == 1, f"503 gave exit {failing.returncode}")
        return "exit 0 on 200, 1 on 503"

    check("docker: the image's health-check script (bash /dev/tcp, no curl)", healthcheck_script)

    def dockerignore() -> str:
        lines = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()]
        patterns = [l for l in lines if l and not l.startswith("#")]
        workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["members"]
        needed = ["Cargo.toml", "Cargo.lock", "catalog/models.json", "web/dist/index.html",
                  "control-plane/build.rs", "control-plane/src/main.rs", "data-plane/src/main.rs"]
        needed += [f"{m}/Cargo.toml" for m in workspace]
        for p in needed:
            expect((ROOT / p).exists(), f"{p} does not exist")
            expect(not dockerignore_excludes(patterns, p), f".dockerignore excludes {p}, which the build needs")
        unwanted = ["target/debug/x", ".git/HEAD", "web/node_modules/x/package.json", "web/src/main.tsx",
                    "docs/console/keys.png", "deploy/.env", "data/switchyard.db", ".ci/run",
                    "control-plane/target/x"]
        for p in unwanted:
            expect(dockerignore_excludes(patterns, p), f".dockerignore lets {p} into the build context")
        return f"{len(needed)} needed paths kept, {len(unwanted)} excluded"

    check("docker: .dockerignore keeps what the build reads (web/dist) and drops the rest", dockerignore)


def main() -> int:
    os.chdir(ROOT)
    chart_checks()
    compose_checks()
    prometheus_checks()
    grafana_checks()
    docker_checks()
    failed = [name for name, error in RESULTS if error]
    print(f"validate-deploy: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

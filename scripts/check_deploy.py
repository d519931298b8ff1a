#!/usr/bin/env python3
"""Static checks of docker-compose.yml and everything under deploy/.

- docker-compose.yml: valid against the Compose Specification JSON schema
  (tools/schemas/compose-spec.json), every depends_on/volume source exists, and
  `docker compose config -q` passes when a Compose CLI is installed.
- deploy/k8s: every manifest listed in kustomization.yaml exists and is valid against
  the Kubernetes OpenAPI schema (kubernetes-validate, strict: unknown fields fail);
  CRDs (KEDA, Prometheus Operator) are checked structurally; Services, PDBs, the
  ScaledObject and the PodMonitor select something that exists; every Deployment has
  probes, resources, a non-root security context and a termination grace period longer
  than the drain deadline in the ConfigMap's sendfleet.toml.
- KEDA: the worker Deployment leaves `replicas` to the HPA KEDA creates; every
  configured provider's jobs queue (under the configured prefix) has a trigger and every
  trigger is such a queue; maxReplicaCount stays within the ceiling docs/OPERATIONS.md
  derives: ceil(min(rate × latency, concurrency) ÷ min(jobs_per_worker, concurrency)) over the providers, with the
  latency the ScaledObject's `sendfleet/provider-latency-ms` annotation assumes.
- deploy/prometheus and deploy/grafana: parse; every alert has expr/for/severity/summary;
  every metric a query names is in docs/METRICS.md (the Rust test
  `metrics_catalogue` checks that the binaries really export them); RabbitMQ's per-queue
  metrics are scraped in compose (plugin enabled) and k8s; deploy/k8s/prometheus-rule.yaml
  holds exactly the groups of deploy/prometheus/alerts.yml (`--write` regenerates it).
- The TOML configs (deploy/compose/sendfleet.toml, the ConfigMap's) are loaded by the
  real binary with --check-config when it has been built.

Exit 0 when everything passes; otherwise print each problem and exit 1.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.30.0"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
PROMETHEUS_RULE = ROOT / "deploy/k8s/prometheus-rule.yaml"
# The provider latency (ms) the ScaledObject's replica ceiling assumes.
LATENCY_ANNOTATION = "sendfleet/provider-latency-ms"
# What the queue alerts need from RabbitMQ's rabbitmq_prometheus plugin.
DETAILED_PATH = "/metrics/detailed"
DETAILED_FAMILIES = {"queue_coarse_metrics", "queue_consumer_count"}
METRIC_RE = re.compile(r"\bsendfleet_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

problems: list[str] = []


def problem(where: str, what: str) -> None:
    problems.append(f"{where}: {what}")


def load_yaml_docs(path: Path) -> list[dict]:
    try:
        return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    except yaml.YAMLError as err:
        problem(str(path.relative_to(ROOT)), f"not valid YAML: {err}")
        return []


def catalogue_metrics() -> set[str]:
    text = (ROOT / "docs/METRICS.md").read_text()
    names = {m for m in re.findall(r"`(sendfleet_[a-z0-9_]+)`", text)}
    if not names:
        problem("docs/METRICS.md", "lists no metrics")
    return names


def check_metric_references(where: str, text: str, catalogue: set[str]) -> int:
    found = 0
    for name in set(METRIC_RE.findall(text)):
        base = name
        for suffix in HISTOGRAM_SUFFIXES:
            if base.endswith(suffix) and base[: -len(suffix)] in catalogue:
                base = base[: -len(suffix)]
        if base not in catalogue:
            problem(where, f"query names {name}, which docs/METRICS.md does not list")
        found += 1
    return found


# ---------------------------------------------------------------- compose
def check_compose() -> None:
    where = "docker-compose.yml"
    docs = load_yaml_docs(ROOT / where)
    if len(docs) != 1:
        problem(where, "expected one YAML document")
        return
    compose = docs[0]
    schema = json.loads((ROOT / "tools/schemas/compose-spec.json").read_text())
    for err in jsonschema.Draft7Validator(schema).iter_errors(compose):
        problem(where, f"compose schema: {'/'.join(map(str, err.path))}: {err.message}")
    services = compose.get("services", {})
    wanted = {"rabbitmq", "redis", "prometheus", "grafana", "mock-provider", "dispatcher", "sender-worker", "callback-ingest"}
    for name in sorted(wanted - services.keys()):
        problem(where, f"service {name} is missing")
    for name, service in services.items():
        deps = service.get("depends_on", [])
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                problem(where, f"{name} depends on unknown service {dep}")
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("./") and not (ROOT / source).exists():
                problem(where, f"{name} mounts {source}, which does not exist")
    if "management" not in services.get("rabbitmq", {}).get("image", ""):
        problem(where, "rabbitmq should use a -management image (management UI)")
    plugins = [
        ROOT / v.split(":", 1)[0]
        for v in services.get("rabbitmq", {}).get("volumes", [])
        if isinstance(v, str) and v.split(":")[1:2] == ["/etc/rabbitmq/enabled_plugins"]
    ]
    if not any(p.exists() and "rabbitmq_prometheus" in p.read_text() for p in plugins):
        problem(where, "rabbitmq must enable rabbitmq_prometheus (mount an enabled_plugins file): the queue alerts need it")
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        run = subprocess.run([docker, "compose", "-f", str(ROOT / where), "config", "-q"], capture_output=True, text=True)
        if run.returncode != 0:
            problem(where, f"docker compose config: {run.stderr.strip()}")
    else:
        print("   (no docker compose CLI here: checked against the Compose JSON schema only)")


# ---------------------------------------------------------------- kubernetes
def selector_matches(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s() -> str | None:
    base = ROOT / "deploy/k8s"
    kustomization = load_yaml_docs(base / "kustomization.yaml")
    if not kustomization:
        problem("deploy/k8s/kustomization.yaml", "missing or empty")
        return None
    resources = kustomization[0].get("resources", [])
    listed = {base / r for r in resources}
    for path in sorted(base.glob("*.yaml")):
        if path.name not in ("kustomization.yaml", "secret.example.yaml") and path not in listed:
            problem(str(path.relative_to(ROOT)), "not listed in kustomization.yaml")
    objects: list[tuple[str, dict]] = []
    for path in [base / r for r in resources] + [base / "secret.example.yaml"]:
        rel = str(path.relative_to(ROOT))
        if not path.exists():
            problem("deploy/k8s/kustomization.yaml", f"resource {path.name} does not exist")
            continue
        for doc in load_yaml_docs(path):
            for key in ("apiVersion", "kind", "metadata"):
                if key not in doc:
                    problem(rel, f"document without {key}")
            if "metadata" in doc and not doc["metadata"].get("name"):
                problem(rel, f"{doc.get('kind')} without metadata.name")
            objects.append((rel, doc))
            if doc.get("apiVersion", "").startswith(("keda.sh/", "monitoring.coreos.com/")):
                continue  # CRDs: kubernetes-validate has no schema; checked below
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as err:
                problem(rel, f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {err.message} at {'/'.join(map(str, err.path))}")
            except Exception as err:  # a version or kind the validator does not know
                problem(rel, f"{doc.get('kind')}: cannot validate: {err}")

    by_kind: dict[str, list[tuple[str, dict]]] = {}
    for rel, doc in objects:
        by_kind.setdefault(doc.get("kind", ""), []).append((rel, doc))
    deployments = {d["metadata"]["name"]: d for _, d in by_kind.get("Deployment", [])}
    pod_labels = {n: d["spec"]["template"]["metadata"].get("labels", {}) for n, d in deployments.items()}
    for want in ("dispatcher", "sender-worker", "callback-ingest"):
        if want not in deployments:
            problem("deploy/k8s", f"no Deployment {want}")

    config_toml = None
    for rel, cm in by_kind.get("ConfigMap", []):
        if "sendfleet.toml" in cm.get("data", {}):
            config_toml = cm["data"]["sendfleet.toml"]
            try:
                parsed = tomllib.loads(config_toml)
            except tomllib.TOMLDecodeError as err:
                problem(rel, f"sendfleet.toml is not valid TOML: {err}")
                parsed = {}
    if config_toml is None:
        problem("deploy/k8s", "no ConfigMap with sendfleet.toml")
        parsed = {}
    drain = {
        "sender-worker": parsed.get("worker", {}).get("shutdown_grace_seconds", 25),
        "dispatcher": parsed.get("dispatcher", {}).get("shutdown_grace_seconds", 10),
        "callback-ingest": parsed.get("callback_ingest", {}).get("shutdown_grace_seconds", 10),
    }
    for name, dep in deployments.items():
        where = f"deploy/k8s Deployment/{name}"
        pod = dep["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if name in drain and grace <= drain[name]:
            problem(where, f"terminationGracePeriodSeconds {grace} must exceed the drain deadline {drain[name]} s")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            problem(where, "pod must run as non-root")
        for c in pod.get("containers", []):
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    problem(where, f"container {c['name']} has no {probe}")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits"):
                problem(where, f"container {c['name']} needs resource requests and limits")
    for kind in ("Service", "PodDisruptionBudget"):
        for rel, obj in by_kind.get(kind, []):
            sel = obj["spec"]["selector"]
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            if not any(selector_matches(sel, labels) for labels in pod_labels.values()):
                problem(rel, f"{kind}/{obj['metadata']['name']} selects no pods")
    auths = {o["metadata"]["name"] for _, o in by_kind.get("TriggerAuthentication", [])}
    for rel, so in by_kind.get("ScaledObject", []):
        check_scaled_object(rel, so, deployments, parsed, auths)
    rabbitmq_scraped = False
    for rel, pm in by_kind.get("PodMonitor", []):
        if pm["spec"].get("namespaceSelector"):
            # Pods elsewhere (RabbitMQ's namespace): only what it scrapes can be checked.
            rabbitmq_scraped |= any(scrapes_queue_metrics(ep.get("path"), ep.get("params", {})) for ep in pm["spec"]["podMetricsEndpoints"])
            continue
        sel = pm["spec"]["selector"]["matchLabels"]
        if not any(selector_matches(sel, labels) for labels in pod_labels.values()):
            problem(rel, "PodMonitor selects no pods")
        ports = {p["name"] for d in deployments.values() for c in d["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
        for ep in pm["spec"]["podMetricsEndpoints"]:
            if ep.get("port") not in ports:
                problem(rel, f"PodMonitor port {ep.get('port')} is no container port")
    if not rabbitmq_scraped:
        problem("deploy/k8s/monitoring.yaml", f"no PodMonitor scrapes RabbitMQ's {DETAILED_PATH} with families {sorted(DETAILED_FAMILIES)}")
    check_prometheus_rule(by_kind.get("PrometheusRule", []))
    return config_toml


def check_scaled_object(rel: str, so: dict, deployments: dict, config: dict, auths: set[str]) -> None:
    """KEDA against the configured providers and the cap (docs/OPERATIONS.md, "Scaling")."""
    spec = so["spec"]
    target = spec["scaleTargetRef"]["name"]
    if target not in deployments:
        problem(rel, f"ScaledObject scales unknown Deployment {target}")
    elif "replicas" in deployments[target]["spec"]:
        problem(f"deploy/k8s Deployment/{target}", "sets replicas, which fights the HPA KEDA creates: leave it out")
    if "cooldownPeriod" in spec and spec.get("minReplicaCount", 0) > 0:
        problem(rel, "cooldownPeriod only delays scaling to zero, which minReplicaCount > 0 never does: scale-in pace is advanced.horizontalPodAutoscalerConfig.behavior")
    prefix = config.get("broker", {}).get("prefix", "sendfleet")
    providers = config.get("providers", [])
    # Every lane's queue: jobs.<id> (normal), jobs.<id>.high, jobs.<id>.bulk.
    wanted = {f"{prefix}.jobs.{p['id']}{lane}" for p in providers for lane in ("", ".high", ".bulk")}
    queues = set()
    for trigger in spec.get("triggers", []):
        queue = trigger.get("metadata", {}).get("queueName", "")
        queues.add(queue)
        if queue not in wanted:
            problem(rel, f"trigger queue {queue!r} is not {prefix}.jobs.<a configured provider>[.high|.bulk]")
        auth = trigger.get("authenticationRef", {}).get("name")
        if auth not in auths:
            problem(rel, f"trigger uses unknown TriggerAuthentication {auth}")
    for queue in sorted(wanted - queues):
        problem(rel, f"configured provider queue {queue} has no trigger")
    latency = so["metadata"].get("annotations", {}).get(LATENCY_ANNOTATION)
    try:
        latency_s = float(latency) / 1000
    except (TypeError, ValueError):
        problem(rel, f"annotation {LATENCY_ANNOTATION} (the provider p99 latency in ms the replica ceiling assumes) is missing or not a number")
        return
    # Requests in flight the fleet can use at the cap: rate × latency, at most the
    # provider's (fleet-wide) concurrency; one worker holds at most
    # min(jobs_per_worker, concurrency) of them. The config defaults (100/s, concurrency
    # 50, jobs_per_worker 2 × concurrency) where a provider leaves them out.
    def workers_needed(p: dict) -> int:
        concurrency = p.get("concurrency", 50)
        per_worker = min(p.get("jobs_per_worker", 2 * concurrency), concurrency)
        in_flight = min(p.get("rate_per_second", 100) * latency_s, concurrency)
        return math.ceil(in_flight / per_worker)
    need = {p["id"]: workers_needed(p) for p in providers}
    ceiling = max([spec.get("minReplicaCount", 0), *need.values()])
    most = spec.get("maxReplicaCount", 100)
    if most > ceiling:
        worst = max(need, key=need.get) if need else "none"
        problem(rel, f"maxReplicaCount {most} exceeds the ceiling {ceiling}: ceil(min(rate_per_second × {latency} ms, concurrency) ÷ min(jobs_per_worker, concurrency)) "
                     f"is {need.get(worst)} for {worst}; more workers cannot send faster than the providers' caps")
    if spec.get("minReplicaCount", 0) > most:
        problem(rel, "minReplicaCount exceeds maxReplicaCount")


def scrapes_queue_metrics(path: str | None, params: dict) -> bool:
    return path == DETAILED_PATH and DETAILED_FAMILIES <= set(params.get("family", []))


def prometheus_rule_text() -> str:
    """deploy/k8s/prometheus-rule.yaml: the groups of alerts.yml under a PrometheusRule."""
    text = ALERTS.read_text()
    groups = text[text.index("groups:"):]
    indented = "".join(f"  {line}" if line.strip() else line for line in groups.splitlines(keepends=True))
    return (
        "# Generated from deploy/prometheus/alerts.yml by `python3 scripts/check_deploy.py --write`;\n"
        "# scripts/check_deploy.py fails when they differ. Edit alerts.yml, then regenerate.\n"
        "# Add the labels your Prometheus' ruleSelector matches (e.g. release: <name>).\n"
        "apiVersion: monitoring.coreos.com/v1\n"
        "kind: PrometheusRule\n"
        "metadata:\n"
        "  name: sendfleet\n"
        "spec:\n" + indented
    )


def check_prometheus_rule(rules: list[tuple[str, dict]]) -> None:
    where = str(PROMETHEUS_RULE.relative_to(ROOT))
    if not rules:
        problem("deploy/k8s", "no PrometheusRule with the alert rules (run scripts/check_deploy.py --write)")
        return
    alerts = yaml.safe_load(ALERTS.read_text())
    for rel, rule in rules:
        if rule.get("spec", {}).get("groups") != alerts.get("groups"):
            problem(rel, "its groups differ from deploy/prometheus/alerts.yml: run python3 scripts/check_deploy.py --write")
    if PROMETHEUS_RULE.exists() and PROMETHEUS_RULE.read_text() != prometheus_rule_text():
        problem(where, "is not what --write generates from deploy/prometheus/alerts.yml: run python3 scripts/check_deploy.py --write")


# ---------------------------------------------------------------- monitoring
def check_monitoring(catalogue: set[str]) -> None:
    prom = load_yaml_docs(ROOT / "deploy/prometheus/prometheus.yml")
    if prom and not prom[0].get("scrape_configs"):
        problem("deploy/prometheus/prometheus.yml", "no scrape_configs")
    if prom and not any(scrapes_queue_metrics(job.get("metrics_path"), job.get("params", {})) for job in prom[0].get("scrape_configs", [])):
        problem("deploy/prometheus/prometheus.yml", f"no job scrapes RabbitMQ's {DETAILED_PATH} with families {sorted(DETAILED_FAMILIES)}")
    where = "deploy/prometheus/alerts.yml"
    alerts = load_yaml_docs(ROOT / where)
    wanted = {
        "SendfleetProviderAuthFailure", "SendfleetDeadLetterGrowth", "SendfleetCapSaturated", "SendfleetCallbackErrors",
        "SendfleetWorkerDown", "SendfleetQueueGrowingAtCap", "SendfleetRedisUnreachable", "SendfleetEventsQueueFilling",
    }
    seen = set()
    for group in (alerts[0].get("groups", []) if alerts else []):
        for rule in group.get("rules", []):
            seen.add(rule.get("alert"))
            for key in ("alert", "expr", "for"):
                if key not in rule:
                    problem(where, f"rule {rule.get('alert')} has no {key}")
            if rule.get("labels", {}).get("severity") not in ("warning", "critical"):
                problem(where, f"rule {rule.get('alert')} needs severity warning|critical")
            if not rule.get("annotations", {}).get("summary"):
                problem(where, f"rule {rule.get('alert')} needs a summary")
            check_metric_references(f"{where} {rule.get('alert')}", str(rule.get("expr", "")), catalogue)
    for name in sorted(wanted - seen):
        problem(where, f"alert {name} is missing")
    ops = (ROOT / "docs/OPERATIONS.md").read_text() if (ROOT / "docs/OPERATIONS.md").exists() else ""
    for name in sorted(seen):
        if name and name not in ops:
            problem("docs/OPERATIONS.md", f"does not explain alert {name}")

    where = "deploy/grafana/dashboards/sendfleet.json"
    try:
        dash = json.loads((ROOT / where).read_text())
    except (OSError, json.JSONDecodeError) as err:
        problem(where, f"not valid JSON: {err}")
        return
    exprs = [t.get("expr", "") for p in dash.get("panels", []) for t in p.get("targets", [])]
    if not exprs:
        problem(where, "no panel queries")
    for expr in exprs:
        check_metric_references(where, expr, catalogue)
    for path in (ROOT / "deploy/grafana/provisioning").rglob("*.yml"):
        load_yaml_docs(path)


# ---------------------------------------------------------------- configs
def check_configs(config_toml: str | None) -> None:
    binary = ROOT / "target/debug/sender-worker"
    if not binary.exists():
        print("   (target/debug/sender-worker not built: configs parsed as TOML only)")
    env = dict(os.environ)
    env.update({k: "check-deploy-placeholder-secret" for k in (
        "INFOBIP_API_KEY", "INFOBIP_RCS_CALLBACK_TOKEN", "INFOBIP_SMS_CALLBACK_TOKEN", "SENDFLEET_API_TOKEN")})
    env.pop("SENDFLEET_CONFIG", None)
    configs = [("deploy/compose/sendfleet.toml", (ROOT / "deploy/compose/sendfleet.toml").read_text())]
    if config_toml is not None:
        configs.append(("deploy/k8s/configmap.yaml sendfleet.toml", config_toml))
    for where, text in configs:
        try:
            tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            problem(where, f"not valid TOML: {err}")
            continue
        if not binary.exists():
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
            f.write(text)
            f.flush()
            run = subprocess.run([str(binary), "--config", f.name, "--check-config"], capture_output=True, text=True, env=env)
        if run.returncode != 0:
            problem(where, f"sender-worker --check-config refused it: {(run.stdout + run.stderr).strip()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="regenerate deploy/k8s/prometheus-rule.yaml from deploy/prometheus/alerts.yml")
    if parser.parse_args().write:
        PROMETHEUS_RULE.write_text(prometheus_rule_text())
        print(f"   wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
    catalogue = catalogue_metrics()
    print(f"   metrics catalogue: {len(catalogue)} metrics")
    check_compose()
    config_toml = check_k8s()
    check_monitoring(catalogue)
    check_configs(config_toml)
    for p in problems:
        print(f"FAIL {p}")
    if problems:
        print(f"{len(problems)} problem(s)")
        return 1
    print("   deploy checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

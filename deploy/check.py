"""The offline check of what an operator applies: no cluster, no network.

    python deploy/check.py [--kubernetes 1.33] [--crds DIR] [--counts prod]

1. yamllint over deploy/ and docker-compose.yml; `docker compose config` on the compose file.
2. `kubectl kustomize` of every overlay with every combination of the components it does not
   already include.
3. Strict schema validation of every rendered object: built-in kinds with the schemas
   kubernetes-validate bundles for the stated Kubernetes version, custom resources with JSON
   Schema converted from the CRDs (``--crds``, the operators' published CRDs). A kind with no
   schema is an error. Every error is reported, not only the first.
4. Policies: every container with requests and limits, liveness/readiness/startup probes (a
   liveness probe never on /readyz), non-root, read-only root filesystem, no privilege escalation,
   capabilities dropped, seccomp RuntimeDefault, no service-account token, a grace period longer
   than the slowest handler; no dangling reference (ConfigMap, Secret, ServiceAccount, scale
   target, selector); a PodDisruptionBudget and a NetworkPolicy for every workload; no Secret in
   prod.
5. `promtool check rules` and `promtool test rules` (a unit test per alert).
6. Every metric a dashboard or an alert uses is one the code exports (or RabbitMQ's plugin).
7. A gauge of a whole park's count, which every replica that visits the park sets to the same
   number, is first aggregated with max, never summed across processes.

Exit 1 with every problem listed, each naming the render, the object and what is wrong.
"""
import argparse
import itertools
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "k8s"
MONITORING = ROOT / "deploy" / "monitoring"
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.33"
# the longest a handler runs: an RPC gives up after RPC_TIMEOUT_S (10 s); a 20,000-recipient
# broadcast fans out in under 10 s (bench/broadcast.py); SIGTERM must leave it time to finish
SLOWEST_HANDLER_S = 30
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
# metrics RabbitMQ's prometheus plugin exports (/metrics/detailed), used by the alerts
EXTERNAL_METRICS = {"rabbitmq_detailed_queue_messages", "rabbitmq_detailed_queue_consumers"}
# gauges of a whole park's count: each replica of the service whose loop visits the park (two needs
# pods, two notify-bulk pods) counts the park's needs or queue and reports the same number, so a sum
# across processes counts the park twice; an expression takes max over the processes first
PARK_COUNT_GAUGES = ("lamplight_needs_open", "lamplight_needs_overdue", "lamplight_notices_pending")


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


# 1. lint ------------------------------------------------------------------------------------
def lint():
    problems = []
    result = run([str(BIN / "yamllint"), "-c", str(ROOT / "deploy" / "yamllint.yaml"), "-f", "parsable",
                  str(ROOT / "deploy"), str(ROOT / "docker-compose.yml")])
    problems += ["yamllint: " + line for line in result.stdout.splitlines() if line.strip()]
    result = run([str(BIN / "docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"])
    if result.returncode:
        problems.append("docker compose config: " + (result.stderr or result.stdout).strip())
    return problems + dockerfile()


def dockerfile():
    """No engine here to build it: what can be known without one. Every COPY source
    exists and is not excluded by .dockerignore; the final stage runs as a numeric
    non-root user and has no compiler or pip."""
    problems = []
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    ignored = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines() if p.strip()]
    stages = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            for source in line.split()[1:-1]:
                if not (ROOT / source).exists():
                    problems.append("Dockerfile: COPY {} does not exist".format(source))
                if any(source.rstrip("/") == pattern.rstrip("/") for pattern in ignored):
                    problems.append("Dockerfile: COPY {} is excluded by .dockerignore".format(source))
    final = lines[stages[-1]:]
    users = [line.split()[1] for line in final if line.startswith("USER ")]
    if not users or not users[-1].split(":")[0].isdigit() or users[-1].split(":")[0] == "0":
        problems.append("Dockerfile: the final stage must run as a numeric non-root USER")
    if any(word in line for line in final if line.startswith("RUN ") for word in ("gcc", "pip install", "apt-get")):
        problems.append("Dockerfile: the final stage installs build tools or packages")
    return problems


# 2. render ----------------------------------------------------------------------------------
def overlays():
    return sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def components():
    return sorted(p.name for p in (K8S / "components").iterdir() if (p / "kustomization.yaml").exists())


def renders():
    """{name: [objects]} for every overlay and combination of components it lacks."""
    out, problems = {}, []
    work = Path(tempfile.mkdtemp(prefix=".check-", dir=K8S))
    try:
        for overlay in overlays():
            own = yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())
            included = {Path(c).name for c in own.get("components", [])}
            extra = [c for c in components() if c not in included]
            for n in range(len(extra) + 1):
                for combo in itertools.combinations(extra, n):
                    name = "+".join((overlay,) + combo)
                    target = work / name
                    target.mkdir()
                    (target / "kustomization.yaml").write_text(yaml.safe_dump({
                        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                        "resources": ["../../overlays/" + overlay],
                        "components": ["../../components/" + c for c in combo]}))
                    result = run([str(BIN / "kubectl"), "kustomize", str(target)])
                    if result.returncode:
                        problems.append("{}: kustomize: {}".format(name, result.stderr.strip()))
                        continue
                    out[name] = [d for d in yaml.safe_load_all(result.stdout) if d]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out, problems


def ident(obj):
    return "{}/{}".format(obj.get("kind"), obj.get("metadata", {}).get("name"))


# 3. schemas ---------------------------------------------------------------------------------
def _strict(node):
    """A CRD's openAPIV3Schema as strict JSON Schema: unknown fields are errors unless the CRD
    preserves them; Kubernetes' int-or-string extension becomes a union."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _strict(v) for k, v in node.items()}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    preserve = node.pop("x-kubernetes-preserve-unknown-fields", False)
    if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node and not preserve:
        node["additionalProperties"] = False
    if node.get("nullable"):
        node.pop("nullable")
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
    return {k: v for k, v in node.items() if not k.startswith("x-kubernetes-")}


def crd_schemas(crd_dir):
    """{(apiVersion, kind): JSON Schema} from every CRD file in ``crd_dir``."""
    schemas = {}
    for path in sorted(Path(crd_dir).glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = (version.get("schema") or {}).get("openAPIV3Schema")
                if schema:
                    strict = _strict(schema)
                    strict.setdefault("properties", {})["metadata"] = {"type": "object"}
                    schemas[("{}/{}".format(group, version["name"]), kind)] = strict
    return schemas


def builtin_validator(obj, version):
    import kubernetes_validate.utils as kv

    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", obj["apiVersion"])
    schema_dir = "v{}-local-strict".format([v for v in kv.all_versions()
                                            if kv.major_minor(v) <= version][-1])
    try:
        schema = kv.schema_contents("kubernetes-json-schema/{}/{}-{}.json".format(
            schema_dir, obj["kind"].lower(), api), version)
    except FileNotFoundError:
        return None
    from referencing import Registry, Resource

    defs = kv.schema_contents("kubernetes-json-schema/{}/_definitions.json".format(schema_dir), version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(rendered, version, crds):
    problems, cache = [], {}
    for name, objects in rendered.items():
        for obj in objects:
            key = (obj.get("apiVersion"), obj.get("kind"))
            if key not in cache:
                cache[key] = (jsonschema.Draft202012Validator(crds[key]) if key in crds
                              else builtin_validator(obj, version))
            validator = cache[key]
            if validator is None:
                problems.append("{}: {}: no schema for {} {} (Kubernetes {} or the CRDs)".format(
                    name, ident(obj), key[0], key[1], version))
                continue
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
                where = ".".join(str(p) for p in error.absolute_path) or "(top)"
                problems.append("{}: {}: {}: {}".format(name, ident(obj), where, error.message[:300]))
    return problems


# 4. policies --------------------------------------------------------------------------------
def _pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def _pod_labels(obj):
    return obj["spec"]["template"]["metadata"].get("labels", {})


def _matches(selector, labels):
    selector = selector or {}
    want = selector.get("matchLabels", selector if "matchLabels" not in selector and
                        "matchExpressions" not in selector else {})
    return all(labels.get(k) == v for k, v in want.items())


def _operator_pods(objects):
    """Pods the operators make: (kind/name, labels) of each."""
    for obj in objects:
        if obj["kind"] == "RabbitmqCluster":
            yield ident(obj), {"app.kubernetes.io/name": obj["metadata"]["name"]}
        if obj["kind"] == "MongoDBCommunity":
            yield ident(obj), {"app": obj["metadata"]["name"] + "-svc"}


# Secrets the installer creates before applying prod (deploy/k8s/README.md says how)
INSTALLER_SECRETS = ("lamplight-mongo-password", "lamplight-gateway-token")


def _operator_secrets(objects):
    for obj in objects:
        if obj["kind"] == "RabbitmqCluster":
            yield obj["metadata"]["name"] + "-default-user"
        if obj["kind"] == "MongoDBCommunity":
            for user in obj["spec"].get("users", []):
                yield "{}-{}-{}".format(obj["metadata"]["name"], user["db"], user["name"])


def policies(name, objects):
    problems = []

    def bad(obj, what):
        problems.append("{}: {}: {}".format(name, ident(obj), what))

    have = {(o["kind"], o["metadata"]["name"]) for o in objects}
    refs = {"Secret": {n for k, n in have if k == "Secret"} | set(_operator_secrets(objects)) | set(INSTALLER_SECRETS),
            "ConfigMap": {n for k, n in have if k == "ConfigMap"}, "have": have}
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    workloads = [o for o in objects if o["kind"] in WORKLOADS]
    for obj in workloads:
        _pod_policies(obj, accounts, refs, bad)
    for obj in objects:
        _reference_policies(obj, workloads, objects, refs, bad)
    problems += _isolation_policies(name, objects, workloads)
    if name.split("+")[0] == "prod":
        for obj in objects:
            if obj["kind"] == "Secret":
                bad(obj, "a Secret in prod: credentials come from the operators and the installer, never the repo")
    return problems


def _pod_policies(obj, accounts, refs, bad):
    """A workload's pod: its service account, its shutdown, its containers and its volumes."""
    pod = _pod_spec(obj)
    account = pod.get("serviceAccountName")
    if account and account not in accounts:
        bad(obj, "serviceAccountName {} is not defined".format(account))
    token = pod.get("automountServiceAccountToken",
                    (accounts.get(account) or {}).get("automountServiceAccountToken"))
    if token is not False:
        bad(obj, "automountServiceAccountToken is not false (pod or service account)")
    if (pod.get("terminationGracePeriodSeconds") or 30) <= SLOWEST_HANDLER_S:
        bad(obj, "terminationGracePeriodSeconds must be over {} s (the slowest handler)".format(SLOWEST_HANDLER_S))
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        where = "container {}".format(container["name"])
        _container_limits(obj, pod, container, where, bad)
        _container_security(obj, pod.get("securityContext", {}), container, where, bad)
        _container_refs(obj, container, where, refs, bad)
    for volume in pod.get("volumes", []):
        if "configMap" in volume and volume["configMap"]["name"] not in refs["ConfigMap"]:
            bad(obj, "volume {} mounts ConfigMap {} which is not defined".format(
                volume["name"], volume["configMap"]["name"]))
        if "secret" in volume and volume["secret"]["secretName"] not in refs["Secret"]:
            bad(obj, "volume {} mounts Secret {} which is not defined".format(
                volume["name"], volume["secret"]["secretName"]))


def _container_limits(obj, pod, container, where, bad):
    resources = container.get("resources", {})
    for part in ("requests", "limits"):
        for res in ("cpu", "memory"):
            if res not in resources.get(part, {}):
                bad(obj, "{} has no {} {}".format(where, res, part[:-1] if part == "limits" else "request"))
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if container in pod.get("containers", []) and probe not in container:
            bad(obj, "{} has no {}".format(where, probe))
    if (container.get("livenessProbe", {}).get("httpGet") or {}).get("path") == "/readyz":
        bad(obj, "{}: liveness must not depend on RabbitMQ or MongoDB (/readyz)".format(where))


def _container_security(obj, context, container, where, bad):
    sc = container.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or context.get("runAsNonRoot")):
        bad(obj, "{} may run as root (runAsNonRoot)".format(where))
    if sc.get("readOnlyRootFilesystem") is not True:
        bad(obj, "{} root filesystem is writable".format(where))
    if sc.get("allowPrivilegeEscalation") is not False:
        bad(obj, "{} allows privilege escalation".format(where))
    if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
        bad(obj, "{} keeps its capabilities (drop ALL)".format(where))
    seccomp = (sc.get("seccompProfile") or context.get("seccompProfile") or {}).get("type")
    if seccomp != "RuntimeDefault":
        bad(obj, "{} seccomp profile is not RuntimeDefault".format(where))


def _container_refs(obj, container, where, refs, bad):
    for source in container.get("envFrom", []):
        if "configMapRef" in source and source["configMapRef"]["name"] not in refs["ConfigMap"]:
            bad(obj, "{} envFrom ConfigMap {} is not defined".format(where, source["configMapRef"]["name"]))
        if "secretRef" in source and source["secretRef"]["name"] not in refs["Secret"]:
            bad(obj, "{} envFrom Secret {} is not defined".format(where, source["secretRef"]["name"]))
    for env in container.get("env", []):
        ref = env.get("valueFrom", {})
        if "secretKeyRef" in ref and ref["secretKeyRef"]["name"] not in refs["Secret"]:
            bad(obj, "{} env {} reads Secret {} which nothing defines or creates".format(
                where, env["name"], ref["secretKeyRef"]["name"]))
        if "configMapKeyRef" in ref and ref["configMapKeyRef"]["name"] not in refs["ConfigMap"]:
            bad(obj, "{} env {} reads ConfigMap {} which is not defined".format(
                where, env["name"], ref["configMapKeyRef"]["name"]))


def _reference_policies(obj, workloads, objects, refs, bad):
    """What an autoscaler scales, what a trigger reads, what a Service or a budget selects."""
    targets = {(o["kind"], o["metadata"]["name"]) for o in workloads}
    if obj["kind"] == "HorizontalPodAutoscaler":
        ref = obj["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in targets:
            bad(obj, "scales {}/{} which is not defined".format(ref["kind"], ref["name"]))
    if obj["kind"] == "ScaledObject":
        ref = obj["spec"]["scaleTargetRef"]
        if (ref.get("kind", "Deployment"), ref["name"]) not in targets:
            bad(obj, "scales {} which is not defined".format(ref["name"]))
        for trigger in obj["spec"]["triggers"]:
            auth = (trigger.get("authenticationRef") or {}).get("name")
            if auth and ("TriggerAuthentication", auth) not in refs["have"]:
                bad(obj, "trigger uses TriggerAuthentication {} which is not defined".format(auth))
    if obj["kind"] == "TriggerAuthentication":
        for ref in obj["spec"].get("secretTargetRef", []):
            if ref["name"] not in refs["Secret"]:
                bad(obj, "reads Secret {} which nothing defines or creates".format(ref["name"]))
    if obj["kind"] in ("Service", "PodDisruptionBudget"):
        selector = obj["spec"].get("selector") or {}
        pods = [_pod_labels(w) for w in workloads] + [labels for _, labels in _operator_pods(objects)]
        if not any(_matches(selector, labels) for labels in pods):
            bad(obj, "selects no pod ({})".format(json.dumps(selector, sort_keys=True)))


def _isolation_policies(name, objects, workloads):
    """A default-deny NetworkPolicy, and every pod under a budget and a policy of its own."""
    problems = []
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    policies_ = [o for o in objects if o["kind"] == "NetworkPolicy"]
    if not any(p["spec"].get("podSelector") == {} and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not p["spec"].get("ingress") and not p["spec"].get("egress") for p in policies_):
        problems.append("{}: no default-deny NetworkPolicy".format(name))
    pods = [(ident(w), _pod_labels(w)) for w in workloads] + list(_operator_pods(objects))
    for who, labels in pods:
        if not any(_matches(p["spec"]["selector"], labels) for p in pdbs):
            problems.append("{}: {}: no PodDisruptionBudget selects its pods".format(name, who))
        if not any(p["spec"].get("podSelector") and _matches(p["spec"]["podSelector"], labels) for p in policies_):
            problems.append("{}: {}: no NetworkPolicy of its own selects its pods".format(name, who))
    return problems


# 5. alert rules -----------------------------------------------------------------------------
def rule_groups():
    rule = yaml.safe_load((K8S / "components" / "monitoring" / "prometheusrule.yaml").read_text())
    return rule["spec"]


def promtool():
    problems = []
    exe = shutil.which("promtool")
    if not exe:
        return ["promtool not found (Debian's prometheus package)"]
    work = Path(tempfile.mkdtemp(prefix="lamplight-rules-"))
    try:
        (work / "rules.yaml").write_text(yaml.safe_dump(rule_groups()))
        shutil.copy(MONITORING / "alerts_test.yaml", work / "alerts_test.yaml")
        result = run([exe, "check", "rules", str(work / "rules.yaml")])
        if result.returncode:
            problems.append("promtool check rules: " + (result.stdout + result.stderr).strip())
        result = run([exe, "test", "rules", str(work / "alerts_test.yaml")])
        if result.returncode:
            problems.append("promtool test rules: " + (result.stdout + result.stderr).strip())
        tested = set(re.findall(r"alertname:\s*(\w+)", (MONITORING / "alerts_test.yaml").read_text()))
        for group in rule_groups()["groups"]:
            for rule in group["rules"]:
                if "alert" in rule and rule["alert"] not in tested:
                    problems.append("alert {} has no promtool unit test".format(rule["alert"]))
                if "alert" in rule and not (ROOT / "docs" / "runbooks" / (rule["alert"] + ".md")).exists():
                    problems.append("alert {} has no runbook docs/runbooks/{}.md".format(rule["alert"], rule["alert"]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return problems


# 6. metrics ---------------------------------------------------------------------------------
def exported_metrics():
    """Every sample name the code's prometheus-client metrics expose."""
    sys.path.insert(0, str(ROOT))
    import importlib

    from prometheus_client import Counter as PCounter
    from prometheus_client import Gauge, Histogram, Summary

    modules = ["lamplight.metrics"] + ["services.{}.metrics".format(path.parent.name)
                                       for path in sorted((ROOT / "services").glob("*/metrics.py"))]
    names = set()
    for value in (v for name in modules for v in vars(importlib.import_module(name)).values()):
        if isinstance(value, PCounter):
            names |= {value._name + "_total", value._name + "_created"}
        elif isinstance(value, Histogram):
            names |= {value._name + s for s in ("_bucket", "_sum", "_count", "_created")}
        elif isinstance(value, Summary):
            names |= {value._name + s for s in ("_sum", "_count", "_created")}
        elif isinstance(value, Gauge):
            names.add(value._name)
    return names


def _expressions():
    """(where, expr) of every dashboard panel and alert rule."""
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel.get("targets", []):
                yield "{} panel '{}'".format(path.name, panel["title"]), target["expr"]
    for group in rule_groups()["groups"]:
        for rule in group["rules"]:
            yield "alert {}".format(rule.get("alert") or rule.get("record")), rule["expr"]


def used_metrics():
    """{metric: [where]} of every metric name in the dashboards and the alert rules."""
    used = {}
    pattern = re.compile(r"\b((?:lamplight|rabbitmq)_[a-z0-9_]+)")
    for where, expr in _expressions():
        for metric in pattern.findall(expr):
            used.setdefault(metric, []).append(where)
    for path in sorted((MONITORING / "dashboards").glob("*.json")):
        for var in json.loads(path.read_text())["templating"]["list"]:
            for metric in pattern.findall(json.dumps(var.get("query", ""))):
                used.setdefault(metric, []).append("{} variable {}".format(path.name, var["name"]))
    return used


def metrics_check():
    known = exported_metrics() | EXTERNAL_METRICS
    return ["{} uses {}, which no code exports".format(", ".join(sorted(set(where))), metric)
            for metric, where in sorted(used_metrics().items()) if metric not in known]


def park_count_check():
    problems = []
    for where, expr in _expressions():
        for metric in PARK_COUNT_GAUGES:
            uses = len(re.findall(r"\b{}\b".format(metric), expr))
            under_max = len(re.findall(r"\bmax(?:\s+by\s*\([^)]*\))?\s*\(\s*{}\b".format(metric), expr))
            if uses > under_max:
                problems.append("{} aggregates {} other than with max first: every replica reports the "
                                "whole park's count ({})".format(where, metric, expr.strip()))
    return problems


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubernetes", default=KUBERNETES_VERSION, help="the Kubernetes version to validate for")
    parser.add_argument("--crds", help="directory of the operators' CRDs (default: ../shared/k8s-crds)")
    parser.add_argument("--counts", metavar="RENDER", help="print the objects of one render by kind")
    args = parser.parse_args(argv)
    crd_dir = Path(args.crds) if args.crds else next(
        (p for p in (ROOT.parent / "shared" / "k8s-crds", Path("/work/shared/k8s-crds")) if p.is_dir()), None)
    problems = lint()
    rendered, render_problems = renders()
    problems += render_problems
    if crd_dir is None or not crd_dir.is_dir():
        problems.append("no CRDs to validate custom resources against (--crds DIR)")
        crds = {}
    else:
        crds = crd_schemas(crd_dir)
    problems += validate(rendered, args.kubernetes, crds)
    for name, objects in rendered.items():
        problems += policies(name, objects)
    problems += promtool()
    problems += metrics_check()
    problems += park_count_check()
    if args.counts and args.counts in rendered:
        for kind, n in sorted(Counter(o["kind"] for o in rendered[args.counts]).items()):
            print("{:>4}  {}".format(n, kind))
        print("{:>4}  objects in {}".format(len(rendered[args.counts]), args.counts))
    for problem in problems:
        print(problem)
    objects = sum(len(v) for v in rendered.values())
    print("deploy check: {} render(s) ({}), {} objects, Kubernetes {}, {} CRD schema(s): {}".format(
        len(rendered), ", ".join(sorted(rendered)), objects, args.kubernetes, len(crds),
        "{} problem(s)".format(len(problems)) if problems else "all good"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Offline checks of the chart's rendered manifests and of custom resources.

  validate.py pod-security RENDERED.yaml
      every Deployment and Job pod meets the `restricted` Pod Security
      Standard, has a read-only root filesystem, resources, and (Deployments)
      readiness and liveness probes on /readyz and /healthz.
  validate.py rbac RENDERED.yaml deploy/rbac.yaml
      the chart's RBAC is exactly deploy/rbac.yaml (which the operator's
      mocked-API tests check every request against).
  validate.py args RENDERED.yaml MAILROUTE MAILROUTE_RELAY
      every container's rendered args are accepted by the real binary
      (flag names and value types, checked by running it with --help last).
  validate.py objects CRDS.yaml FILE_OR_DIR...
      every mailroute.io object validates against its CRD's openAPIV3Schema
      as the API server would: types, patterns, enums, bounds, required
      fields, unknown fields refused (kubectl's strict field validation) and
      the CEL rules (x-kubernetes-validations). An object annotated
      test.mailroute.io/expect must instead be refused with that message.

Exit 0 when everything holds; otherwise every problem is printed, exit 1.
"""

import copy
import pathlib
import subprocess
import sys

import celpy
import jsonschema
import yaml

EXPECT = "test.mailroute.io/expect"


def documents(paths):
    """(file, document) for every YAML document under paths."""
    for p in map(pathlib.Path, paths):
        files = sorted(p.rglob("*.yaml")) if p.is_dir() else [p]
        for f in files:
            for doc in yaml.safe_load_all(f.read_text()):
                if doc:
                    yield f, doc


def name_of(doc):
    m = doc.get("metadata", {})
    return f"{doc.get('kind')}/{m.get('namespace', '')}/{m.get('name')}"


# --- pod-security -----------------------------------------------------------


def pod_security(rendered):
    problems = []
    for f, doc in documents([rendered]):
        kind = doc.get("kind")
        if kind not in ("Deployment", "Job"):
            continue
        pod = doc["spec"]["template"]["spec"]
        where = name_of(doc)
        psc = pod.get("securityContext", {})
        if psc.get("runAsNonRoot") is not True:
            problems.append(f"{where}: pod securityContext.runAsNonRoot is not true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccompProfile is not RuntimeDefault")
        for forbidden in ("hostNetwork", "hostPID", "hostIPC"):
            if pod.get(forbidden):
                problems.append(f"{where}: {forbidden} is set")
        for v in pod.get("volumes", []):
            if "hostPath" in v:
                problems.append(f"{where}: hostPath volume {v['name']}")
        for c in pod.get("initContainers", []) + pod["containers"]:
            at = f"{where} container {c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{at}: capabilities.drop is not [ALL]")
            if sc.get("capabilities", {}).get("add"):
                problems.append(f"{at}: adds capabilities")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: the root filesystem is writable")
            if sc.get("privileged"):
                problems.append(f"{at}: privileged")
            if not c.get("resources", {}).get("requests"):
                problems.append(f"{at}: no resource requests")
            if kind == "Deployment":
                for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                    got = c.get(probe, {}).get("httpGet", {}).get("path")
                    if got != path:
                        problems.append(f"{at}: {probe} is {got!r}, not {path}")
    return problems


# --- args -------------------------------------------------------------------


def args(rendered, mailroute, relay):
    binaries = {"operator": mailroute, "cleanup": mailroute, "relay": relay}
    problems, seen = [], 0
    for _, doc in documents([rendered]):
        if doc.get("kind") not in ("Deployment", "Job"):
            continue
        for c in doc["spec"]["template"]["spec"]["containers"]:
            binary = binaries.get(c["name"])
            if binary is None:
                problems.append(f"{name_of(doc)}: no binary known for container {c['name']}")
                continue
            seen += 1
            run = subprocess.run([binary, *c.get("args", []), "--help"], capture_output=True, text=True)
            if run.returncode != 0:
                problems.append(f"{name_of(doc)} container {c['name']}: {run.stderr.strip()}")
    if seen == 0:
        problems.append(f"no containers in {rendered}")
    return problems


# --- rbac ---------------------------------------------------------------------

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def rbac_objects(path):
    out = {}
    for _, doc in documents([path]):
        if doc.get("kind") in RBAC_KINDS:
            key = name_of(doc)
            out[key] = {k: doc.get(k) for k in ("rules", "roleRef", "subjects")}
    return out


def rbac(rendered, reference):
    chart, ref = rbac_objects(rendered), rbac_objects(reference)
    problems = []
    for key in sorted(set(chart) | set(ref)):
        if key not in chart:
            problems.append(f"{key}: in {reference}, not rendered by the chart")
        elif key not in ref:
            problems.append(f"{key}: rendered by the chart, not in {reference}")
        elif chart[key] != ref[key]:
            problems.append(f"{key}: differs\n  chart: {chart[key]}\n  file:  {ref[key]}")
    return problems


# --- objects ------------------------------------------------------------------


def strict(schema):
    """The schema with unknown fields refused, as kubectl's strict field
    validation does (the API server would otherwise prune them silently)."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                node.get("type") == "object"
                and "properties" in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node.setdefault("additionalProperties", False)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    # metadata is checked by the API server itself, not by the CRD.
    s["properties"]["metadata"] = {"type": "object"}
    s["properties"]["apiVersion"] = {"type": "string"}
    s["properties"]["kind"] = {"type": "string"}
    return s


def cel_problems(schema, value, path, env):
    """Evaluates every x-kubernetes-validations rule against the value."""
    problems = []
    if value is None:
        return problems
    for rule in schema.get("x-kubernetes-validations", []):
        program = env.program(env.compile(rule["rule"]))
        if not program.evaluate({"self": celpy.json_to_cel(value)}):
            problems.append(f"{path}: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for k, sub in schema.get("properties", {}).items():
            problems += cel_problems(sub, value.get(k), f"{path}.{k}", env)
    elif isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            problems += cel_problems(schema["items"], v, f"{path}[{i}]", env)
    return problems


def crd_schemas(crds_path):
    schemas = {}
    for _, crd in documents([crds_path]):
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            schemas[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return schemas


def object_problems(schema, doc, env):
    validator = jsonschema.Draft7Validator(strict(schema))
    found = [
        f"{'.'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(doc)
    ]
    return found + cel_problems(schema, doc, "", env)


def objects(crds_path, paths):
    schemas, env = crd_schemas(crds_path), celpy.Environment()
    problems, seen = [], 0
    for f, doc in documents(paths):
        schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
        if schema is None:
            continue  # not a mailroute.io object (mailroute check skips it too)
        seen += 1
        where = f"{f}: {name_of(doc)}"
        found = object_problems(schema, doc, env)
        want = doc["metadata"].get("annotations", {}).get(EXPECT)
        if want:
            if not any(want in p for p in found):
                problems.append(f"{where}: expected a refusal containing {want!r}, got {found}")
        else:
            problems += [f"{where}: {p}" for p in found]
    if seen == 0:
        problems.append(f"no mailroute.io objects in {paths}")
    print(f"{seen} objects checked against {crds_path}")
    return problems


def main(argv):
    if len(argv) == 2 and argv[0] == "pod-security":
        problems = pod_security(argv[1])
    elif len(argv) == 4 and argv[0] == "args":
        problems = args(argv[1], argv[2], argv[3])
    elif len(argv) == 3 and argv[0] == "rbac":
        problems = rbac(argv[1], argv[2])
    elif len(argv) >= 3 and argv[0] == "objects":
        problems = objects(argv[1], argv[2:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

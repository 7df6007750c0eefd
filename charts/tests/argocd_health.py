#!/usr/bin/env python3
"""Checks deploy/argocd/health.lua under Lua 5.1 (Argo CD runs gopher-lua, a
Lua 5.1; here the real Lua 5.1 from the lupa wheel runs it): the conditions `mailroute check` computes for every example object,
plus the states only a cluster shows (no status yet, an old generation,
Stalled), must give the expected Argo CD health. Also checks that every key of
deploy/argocd/argocd-cm.yaml holds health.lua verbatim.

usage: argocd_health.py MAILROUTE_BINARY
       argocd_health.py --write-snippet   (after editing health.lua)
"""

import json
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
LUA = REPO / "deploy/argocd/health.lua"
KINDS = ("AddressSpace", "RecipientPolicy", "MailContact", "SmtpConnector", "RoutingTable")
RISKS = ("LoopRisk", "AuthoritativenessConflict")


def obj(conditions, generation=1, observed=1):
    o = {"metadata": {"name": "x", "generation": generation}}
    if conditions is not None:
        o["status"] = {"conditions": conditions}
        if observed is not None:
            o["status"]["observedGeneration"] = observed
    return o


def cond(type_, status, reason, message=""):
    return {"type": type_, "status": status, "reason": reason, "message": message}


def expected(conditions):
    """What the health script must say: the first risk, else Ready."""
    by_type = {c["type"]: c for c in conditions}
    for t in RISKS:
        if by_type[t]["status"] == "True":
            return "Degraded", f"{t} {by_type[t]['reason']}"
    ready = by_type["Ready"]
    return ("Healthy" if ready["status"] == "True" else "Degraded"), ready["reason"]


def cases_from_check(binary):
    files = [str(p) for p in sorted((REPO / "examples").rglob("*.yaml"))]
    args = [binary, "check", "-o", "json", "--self", "relay.mail.svc.cluster.local"]
    for f in files:
        args += ["-f", f]
    out = subprocess.run(args, capture_output=True, text=True)
    if out.returncode not in (0, 1):
        sys.exit(f"mailroute check failed: {out.stderr}")
    cases = []
    for o in json.loads(out.stdout)["objects"]:
        status, message = expected(o["conditions"])
        cases.append({
            "name": f"{o['kind']}/{o['namespace']}/{o['name']}",
            "obj": obj(o["conditions"]),
            "status": status,
            "message": message,
        })
    return cases


HEALTHY = [
    cond("Ready", "True", "Compiled", "accepts example.com"),
    cond("LoopRisk", "False", "NoLoopRisk"),
    cond("AuthoritativenessConflict", "False", "NoConflict"),
    cond("Stalled", "False", "Compiled"),
]

FIXED = [
    {"name": "no status yet", "obj": obj(None), "status": "Progressing",
     "message": "Waiting for the mailroute operator"},
    {"name": "an older generation observed", "obj": obj(HEALTHY, generation=3, observed=2),
     "status": "Progressing", "message": "observe generation 3"},
    {"name": "no observedGeneration", "obj": obj(HEALTHY, generation=1, observed=None),
     "status": "Progressing", "message": "observe generation 1"},
    {"name": "healthy", "obj": obj(HEALTHY), "status": "Healthy", "message": "Compiled"},
    {"name": "stalled", "obj": obj([
        cond("Ready", "False", "InvalidSpec", "spec.domain: not a domain"),
        cond("LoopRisk", "False", "NoLoopRisk"),
        cond("AuthoritativenessConflict", "False", "NoConflict"),
        cond("Stalled", "True", "InvalidSpec", "spec.domain: not a domain")]),
     "status": "Degraded", "message": "Stalled InvalidSpec: spec.domain: not a domain"},
    {"name": "ready unknown", "obj": obj([cond("Ready", "Unknown", "Pending")]),
     "status": "Progressing", "message": "Waiting"},
]


def routing_table(conditions):
    o = obj(conditions, observed=None)
    o["kind"] = "RoutingTable"
    return o


PUBLISHED = cond("Published", "True", "Published", "generation 0123456789ab: 2 ConfigMap(s), 900 bytes")
FIXED += [
    {"name": "RoutingTable: not written yet", "obj": routing_table(None),
     "status": "Progressing", "message": "Waiting for the mailroute operator"},
    {"name": "RoutingTable: relays behind", "obj": routing_table([PUBLISHED,
        cond("Propagated", "False", "RelaysBehind", "1 of 2 Ready relay pod(s) do not serve generation 0123456789ab: r-2 (serves fedcba987654)")]),
     "status": "Progressing", "message": "RelaysBehind: 1 of 2"},
    {"name": "RoutingTable: a relay not reporting", "obj": routing_table([PUBLISHED,
        cond("Propagated", "Unknown", "RelaysNotReporting", "1 Ready relay pod(s) have not reported serving generation 0123456789ab within 120 s (each may serve it and be unable to report: see its log): r-2 (no report)")]),
     "status": "Progressing", "message": "RelaysNotReporting"},
    {"name": "RoutingTable: propagated", "obj": routing_table([PUBLISHED,
        cond("Propagated", "True", "AllRelaysServing", "2 of 2 Ready relay pod(s) serve generation 0123456789ab")]),
     "status": "Healthy", "message": "2 of 2"},
]


SNIPPET_HEAD = """\
# Paste into Argo CD's argocd-cm ConfigMap (or merge it with
#   kubectl -n argocd patch configmap argocd-cm --patch-file deploy/argocd/argocd-cm.yaml)
# so Argo CD reads the health of mailroute objects from their conditions.
# Each key holds deploy/argocd/health.lua verbatim (generated by
# charts/tests/argocd_health.py --write-snippet; charts/test.sh checks).
apiVersion: v1
kind: ConfigMap
metadata:
  name: argocd-cm
  namespace: argocd
  labels:
    app.kubernetes.io/name: argocd-cm
    app.kubernetes.io/part-of: argocd
data:
"""


def write_snippet():
    out = [SNIPPET_HEAD]
    for kind in KINDS:
        out.append(f"  resource.customizations.health.mailroute.io_{kind}: |\n")
        out += ["    " + line if line.strip() else "\n" for line in LUA.read_text().splitlines(True)]
    (REPO / "deploy/argocd/argocd-cm.yaml").write_text("".join(out))


def check_snippet():
    script = LUA.read_text()
    cm = yaml.safe_load((REPO / "deploy/argocd/argocd-cm.yaml").read_text())
    problems = []
    for kind in KINDS:
        key = f"resource.customizations.health.mailroute.io_{kind}"
        if cm["data"].get(key) != script:
            problems.append(f"deploy/argocd/argocd-cm.yaml: {key} is not health.lua verbatim")
    if len(cm["data"]) != len(KINDS):
        problems.append("deploy/argocd/argocd-cm.yaml: unexpected keys")
    return problems


def lua_table(lua, value):
    """A JSON-like Python value as Lua tables, as Argo CD hands `obj` over."""
    if isinstance(value, dict):
        return lua.table_from({k: lua_table(lua, v) for k, v in value.items()})
    if isinstance(value, list):
        return lua.table_from([lua_table(lua, v) for v in value])
    return value


def run_health(cases):
    """Runs the health script the way Argo CD does (the object as the global
    `obj`, the script's return value as the health); the mismatches."""
    from lupa.lua51 import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)
    assert lua.eval("_VERSION") == "Lua 5.1"
    script = lua.execute("return function(src) return assert(loadstring(src)) end")(LUA.read_text())
    problems = []
    for case in cases:
        lua.globals().obj = lua_table(lua, case["obj"])
        try:
            hs = script()
        except Exception as e:  # a Lua error in the script
            problems.append(f"{case['name']}: the script failed: {e}")
            continue
        status, message = hs["status"], hs["message"] or ""
        if status != case["status"] or case["message"] not in message:
            problems.append(f"{case['name']}: got {status} {message!r}, "
                            f"want {case['status']} containing {case['message']!r}")
    return problems


def main():
    if sys.argv[1:] == ["--write-snippet"]:
        write_snippet()
        return 0
    cases = cases_from_check(sys.argv[1]) + FIXED
    statuses = {c["status"] for c in cases}
    assert statuses == {"Healthy", "Degraded", "Progressing"}, statuses
    problems = run_health(cases) + check_snippet()
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(cases)} cases, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

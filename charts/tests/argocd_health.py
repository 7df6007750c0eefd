#!/usr/bin/env python3
"""Checks deploy/argocd/health.lua under Lua 5.1 (Argo CD runs gopher-lua, a
Lua 5.1): the conditions `mailroute check` computes for every example object,
plus the states only a cluster shows (no status yet, an old generation,
Stalled), must give the expected Argo CD health. Also checks that every key of
deploy/argocd/argocd-cm.yaml holds health.lua verbatim.

usage: argocd_health.py MAILROUTE_BINARY
"""

import json
import pathlib
import subprocess
import sys

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
LUA = REPO / "deploy/argocd/health.lua"
KINDS = ("AddressSpace", "RecipientPolicy", "MailContact", "SmtpConnector")
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


def main():
    cases = cases_from_check(sys.argv[1]) + FIXED
    statuses = {c["status"] for c in cases}
    assert statuses == {"Healthy", "Degraded", "Progressing"}, statuses
    run = subprocess.run(["lua5.1", str(pathlib.Path(__file__).parent / "run_health.lua"), str(LUA)],
                         input=json.dumps(cases), capture_output=True, text=True)
    print(run.stdout, end="", file=sys.stderr if run.returncode else sys.stdout)
    problems = check_snippet()
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if run.returncode or problems else 0


if __name__ == "__main__":
    sys.exit(main())

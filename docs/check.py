#!/usr/bin/env python3
"""The docs check: every command the documentation shows is run, and every
output it shows is compared with what the command printed, so the docs
cannot drift from the code (CONTRIBUTING.md, "Documentation").

    python3 docs/check.py [--no-run] [--smoke] [--cluster] [FILE.md ...]

Every fenced block whose language is `sh` is a list of commands, marked by
the words after the language (GitHub shows only the language):

    ```sh            run here, in the repository, as written
    ```sh smoke      a long benchmark or fuzz run: run with MAILROUTE_SMOKE=1,
                     which makes the programs behind it do a small amount of
                     the same work (only with --smoke)
    ```sh cluster    needs a cluster: run against KUBECONFIG's (only with
                     --cluster; CI runs it on the kube kit's cluster)
    ```sh ci         CI runs exactly these lines: each must be in .ci/run
    ```sh manual REASON   not run here, for REASON (listed at the end)

A mark may be followed by `exit=N`: the block must end with status N (for
a command shown failing). A ```yaml check``` block holds mailroute objects
that `mailroute check` must find all Ready.

A ```text output``` block right after a `sh` block must equal what the block
printed on stdout; a ```text excerpt``` block's lines must appear in it in
that order. In both, `…` stands for any text within a line.

Blocks of one file run in order (a later block may use an earlier one's
files), each in its own bash with `set -euo pipefail`, in its own process
group, which is killed when the block ends (so `cmd &` is fine). PATH starts
with target/debug, so the documented binaries are the ones just built, and
target/chart-tools/bin (the `helm` charts/test.sh fetched).
`--no-run` leaves out the plain blocks (for a run of only smoke or cluster
blocks).
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = ["README.md", "CONTRIBUTING.md", "examples/README.md", "docs/*.md"]
TIMEOUT = {"run": 1800, "smoke": 1800, "cluster": 900}


class Block:
    def __init__(self, file, line, lang, words, text):
        self.file, self.line, self.lang, self.words, self.text = file, line, lang, words, text

    @property
    def where(self):
        return f"{self.file.relative_to(REPO)}:{self.line}"


def blocks(path):
    """Every fenced block of a Markdown file, with the line it starts on."""
    out, lines, i = [], path.read_text().splitlines(), 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+)(.*)$", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m.group(1), m.group(2), m.group(3).split()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        lang = info[0] if info else ""
        out.append(Block(path, start, lang, info[1:], "\n".join(body) + "\n"))
    return out


def matches(shown, actual, excerpt):
    """Whether the shown output fits the actual one (`…` = any text)."""
    def pattern(line):
        return re.compile("^" + ".*".join(map(re.escape, line.rstrip().split("…"))) + "$")

    want = [pattern(l) for l in shown.rstrip("\n").splitlines()]
    got = [l.rstrip() for l in actual.rstrip("\n").splitlines()]
    if not excerpt:
        return len(want) == len(got) and all(p.match(g) for p, g in zip(want, got))
    it = iter(got)
    return all(any(p.match(g) for g in it) for p in want)


def run(block, env, timeout):
    """Runs a block's commands; (exit code, stdout, stderr). Output goes to
    files, not pipes: a process the block leaves in the background keeps
    them open, and the block is over when its bash is."""
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.text], cwd=REPO, env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = 124
        try:  # whatever the block left running in the background
            os.killpg(proc.pid, signal.SIGKILL if code == 124 else signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait()
        out.seek(0)
        err.seek(0)
        stderr = err.read() + (f"\n(timed out after {timeout} s)" if code == 124 else "")
        return code, out.read(), stderr


def check_yaml(block, env):
    """A ```yaml check``` block: `mailroute check` finds every object Ready."""
    import tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(block.text)
        f.flush()
        out = subprocess.run(["mailroute", "check", "-f", f.name], env=env, capture_output=True, text=True)
    print(f"{'ok  ' if out.returncode == 0 else 'FAIL'} {block.where} (yaml check)", flush=True)
    if out.returncode == 0:
        return []
    return [f"{block.where}: mailroute check exit {out.returncode}:\n{out.stdout}{out.stderr}"]


def ci_lines():
    return {l.strip() for l in (REPO / ".ci/run").read_text().splitlines()}


def main(argv):
    modes = ({"run"} - ({"run"} if "--no-run" in argv else set())) | \
        {a[2:] for a in argv if a in ("--smoke", "--cluster")}
    files = [REPO / a for a in argv if not a.startswith("--")] or sorted(
        p for pattern in DOCS for p in REPO.glob(pattern))
    env = dict(os.environ)
    env["PATH"] = f"{REPO}/target/debug:{REPO}/target/chart-tools/bin:{env['PATH']}"
    ci = ci_lines()
    failures, manual, ran, skipped = [], [], 0, 0
    for f in files:
        bs = blocks(f)
        for i, b in enumerate(bs):
            if b.lang in ("console", "shell", "bash"):
                failures.append(f"{b.where}: write commands as ```sh (with a mark if needed)")
                continue
            if b.lang == "yaml" and b.words[:1] == ["check"] and "run" in modes:
                failures += check_yaml(b, env)
                ran += 1
                continue
            if b.lang != "sh":
                continue
            words = [w for w in b.words if not w.startswith("exit=")]
            expected = int(next((w[5:] for w in b.words if w.startswith("exit=")), "0"))
            mark = words[0] if words else "run"
            if mark == "manual":
                if len(words) < 2:
                    failures.append(f"{b.where}: `sh manual` needs a reason")
                manual.append(f"{b.where}: {' '.join(words[1:])}")
                continue
            if mark == "ci":
                for line in b.text.splitlines():
                    if line.strip() and not line.startswith("#") and line.strip() not in ci \
                            and line.strip() != "bash .ci/run":
                        failures.append(f"{b.where}: `{line.strip()}` is not in .ci/run")
                continue
            if mark not in TIMEOUT:
                failures.append(f"{b.where}: unknown mark {mark!r}")
                continue
            if mark not in modes:
                skipped += 1
                continue
            block_env = dict(env, MAILROUTE_SMOKE="1") if mark == "smoke" else env
            started = time.monotonic()
            code, out, err = run(b, block_env, TIMEOUT[mark])
            ran += 1
            took = time.monotonic() - started
            print(f"{'ok  ' if code == expected else 'FAIL'} {b.where} ({mark}, {took:.1f} s)", flush=True)
            if code != expected:
                failures.append(f"{b.where}: exit {code}, expected {expected}\n"
                                f"--- stdout\n{out[-3000:]}--- stderr\n{err[-3000:]}")
                continue
            shown = bs[i + 1] if i + 1 < len(bs) else None
            if shown and shown.lang == "text" and shown.words[:1] in (["output"], ["excerpt"]):
                if not matches(shown.text, out, shown.words[0] == "excerpt"):
                    failures.append(f"{shown.where}: the {shown.words[0]} shown differs from what "
                                    f"{b.where} printed:\n{out}")
    for m in manual:
        print(f"not run here: {m}")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"docs check: {ran} block(s) run, {skipped} left for other modes, "
          f"{len(manual)} manual, {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

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
with cargo's debug directory (tools/target-dir), so the documented binaries
are the ones just built, and chart-tools/bin beside it (the `helm`
charts/test.sh fetched).

The docs use the fixed places a reader would: `/tmp/...` files and the
ports 2525, 9090, 18080 and 2601+ on 127.0.0.1 (2526, 9091 and 2701+ where
they show how to choose others). So that two checkouts can
run this at once and nothing is left behind, the plain and smoke blocks run
with `/tmp/` standing for a directory of this run's own (also TMPDIR, removed
at the end) and those ports for free ones (`127.0.0.1:2525` and
`127.0.0.1/2525`, and the demo's PORT, METRICS_PORT and SINK_PORT); what a
block prints is mapped back before it is compared with the docs. Cluster
blocks keep their ports (the cluster's own) but not their `/tmp/` files.

Besides running commands it checks what the docs point at: every relative
link resolves (its file, and its #anchor to a heading there), every
`path/in/the/repo` in inline code exists, no file cites the DESIGN.md that
is not in the repository, and every list of the `mailroute` commands (a
`mailroute a | b` line, a run of four or more of them in backticks, the
synopsis in docs/cli.md) names exactly the commands `mailroute --help` has.
`--no-run` leaves out the plain blocks (for a run of only smoke or cluster
blocks).
"""

import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def target_dir():
    """Cargo's target directory (tools/target-dir): ./target or elsewhere."""
    out = subprocess.run([REPO / "tools/target-dir"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


# The ports the docs show, and the demo's first sink ports (it takes up to
# SINKS consecutive ones).
DOC_PORTS = (2525, 2526, 9090, 9091, 18080)
SINK_PORTS, SINKS = (2601, 2701), 8


def free_port(base=0):
    with socket.socket() as s:
        s.bind(("127.0.0.1", base))
        return s.getsockname()[1]


class Sandbox:
    """This run's stand-ins for the docs' `/tmp/` and ports."""

    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="mailroute-docs-")
        # mkdtemp makes it 0700; the benches' private Postfix, running as
        # user postfix, must reach its directories under this TMPDIR.
        os.chmod(self.work, 0o755)
        self.ports = {p: free_port() for p in DOC_PORTS}
        for first in SINK_PORTS:
            base = self.consecutive_free(SINKS)
            self.ports.update({first + i: base + i for i in range(SINKS)})
        self.back = {v: k for k, v in self.ports.items()}

    @staticmethod
    def consecutive_free(n):
        for _ in range(200):
            base = free_port()
            if base + n >= 65536:
                continue
            try:
                for i in range(1, n):
                    free_port(base + i)
                return base
            except OSError:
                continue
        raise SystemExit("docs/check.py: no range of free ports for the demo's sinks")

    def env(self, env):
        return dict(env, TMPDIR=self.work, PORT=str(self.ports[2525]),
                    METRICS_PORT=str(self.ports[9090]), SINK_PORT=str(self.ports[SINK_PORTS[0]]))

    @staticmethod
    def ports_in(text, mapping):
        return re.sub(r"\b127\.0\.0\.1([:/])(\d+)\b",
                      lambda m: f"127.0.0.1{m.group(1)}{mapping.get(int(m.group(2)), m.group(2))}",
                      text)

    def into(self, text):
        text = re.sub(r"\b((?:METRICS_|SINK_)?PORT)=(\d+)\b",
                      lambda m: f"{m.group(1)}={self.ports.get(int(m.group(2)), m.group(2))}", text)
        return self.ports_in(self.paths_into(text), self.ports)

    def back_from(self, text):
        return self.ports_in(self.paths_back(text), self.back)

    def paths_into(self, text):
        return text.replace("/tmp/", self.work + "/")

    def paths_back(self, text):
        return text.replace(self.work + "/", "/tmp/")

    def close(self):
        shutil.rmtree(self.work, ignore_errors=True)


def run(block, env, timeout, text=None):
    """Runs a block's commands; (exit code, stdout, stderr). Output goes to
    files, not pipes: a process the block leaves in the background keeps
    them open, and the block is over when its bash is."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", text or block.text], cwd=REPO, env=env,
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


def slug(heading):
    """A heading's anchor, as GitHub makes it."""
    text = re.sub(r"\[([^]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path):
    seen, out = {}, set()
    for b_line in outside_fences(path):
        m = re.match(r"^#+\s+(.*)$", b_line)
        if m:
            s = slug(m.group(1))
            n = seen.get(s, 0)
            out.add(s if n == 0 else f"{s}-{n}")
            seen[s] = n + 1
    return out


def outside_fences(path):
    """The lines of a Markdown file that are not in fenced blocks."""
    fence = None
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*(```+)", line)
        if m and (fence is None or m.group(1).startswith(fence)):
            fence = m.group(1) if fence is None else None
            continue
        if fence is None:
            yield line


def tracked():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    return out.stdout.split()


def repo_path_exists(path):
    """A path as the docs write it: from the top, or from a crate's
    directory (`examples/sink.rs` beside the relay's table row, the example
    `examples/scale`), or one git ignores because the tools make it
    (`fuzz/corpus/`)."""
    crates = [d for d in REPO.iterdir() if (d / "Cargo.toml").is_file()]
    candidates = [REPO / path] + [c / path for c in crates] + [c / (path + ".rs") for c in crates]
    if any(c.exists() for c in candidates):
        return True
    return subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", path]).returncode == 0


def references(files):
    """Every relative link and every repository path in inline code
    resolves; nothing cites the DESIGN.md outside the repository."""
    failures = []
    top = {f.split("/")[0] for f in tracked() if "/" in f}
    for f in files:
        where = f.relative_to(REPO)
        for n, line in enumerate(outside_fences(f), 1):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"^[a-z]+:", target) or target.startswith("#") and not target[1:]:
                    continue
                file, _, anchor = target.partition("#")
                dest = (f.parent / file).resolve() if file else f
                if not dest.exists():
                    failures.append(f"{where}: a link to {target}: no such file")
                elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                    failures.append(f"{where}: a link to {target}: no such heading in {dest.relative_to(REPO)}")
            for code in re.findall(r"`([^`\s]+)`", line):
                first = code.split("/")[0]
                if "/" in code and first in top and not re.search(r"[*$<>{}…]", code) \
                        and not repo_path_exists(code.split(":")[0]):
                    failures.append(f"{where}: `{code}`: no such file in the repository")
    for name in tracked():
        path = REPO / name
        if path.suffix in (".md", ".rs", ".yaml", ".sh", ".py", ".toml") and path.is_file() \
                and "DESIGN.md" in path.read_text(errors="replace") and name != "docs/check.py":
            failures.append(f"{name}: cites DESIGN.md, which is not in the repository (docs/design.md is)")
    return failures


def command_lists(files, env):
    """Every list of the `mailroute` commands names all of them."""
    help_text = subprocess.run(["mailroute", "--help"], env=env, capture_output=True, text=True,
                               check=True).stdout
    section = help_text.split("Commands:", 1)[1].split("Options:", 1)[0]
    commands = {m.group(1) for m in re.finditer(r"^  (\w[\w-]*)", section, re.M)} - {"help"}
    failures = []

    def compare(where, listed):
        listed = set(listed)
        if listed != commands:
            missing, extra = sorted(commands - listed), sorted(listed - commands)
            failures.append(f"{where}: lists the mailroute commands without {missing or '-'}"
                            f"{f', with {extra} that it has not' if extra else ''} (mailroute --help)")

    for f in files:
        where = f.relative_to(REPO)
        text = "\n".join(outside_fences(f))
        for m in re.finditer(r"`mailroute ((?:[\w-]+ \| )+[\w-]+)`", text):
            compare(where, m.group(1).split(" | "))
        for m in re.finditer(r"`([\w-]+)`(?:(?:,\s+|,?\s+and\s+|\s+or\s+)`([\w-]+)`)+", text):
            words = re.findall(r"`([\w-]+)`", m.group(0))
            if len(words) >= 4 and sum(w in commands for w in words) >= 3:
                compare(where, words)
    cli = REPO / "docs/cli.md"
    synopsis = next(b for b in blocks(cli) if b.lang == "text")
    compare(f"{synopsis.where} (the synopsis)",
            re.findall(r"^mailroute ([\w-]+)", synopsis.text, re.M))
    return failures


def main(argv):
    modes = ({"run"} - ({"run"} if "--no-run" in argv else set())) | \
        {a[2:] for a in argv if a in ("--smoke", "--cluster")}
    files = [REPO / a for a in argv if not a.startswith("--")] or sorted(
        p for pattern in DOCS for p in REPO.glob(pattern))
    env = dict(os.environ)
    target = target_dir()
    env["PATH"] = f"{target}/debug:{target}/chart-tools/bin:{env['PATH']}"
    ci = ci_lines()
    failures, manual, ran, skipped = [], [], 0, 0
    if "run" in modes:
        failures += references(files) + command_lists(files, env)
    sandbox = Sandbox()
    try:
        ran, skipped, manual = run_blocks(files, modes, env, sandbox, ci, failures)
    finally:
        sandbox.close()
    for m in manual:
        print(f"not run here: {m}")
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    print(f"docs check: {ran} block(s) run, {skipped} left for other modes, "
          f"{len(manual)} manual, {len(failures)} failure(s)")
    return 1 if failures else 0


def run_blocks(files, modes, env, sandbox, ci, failures):
    """Runs the blocks of `files` the modes ask for; (run, skipped, manual)."""
    manual, ran, skipped = [], 0, 0
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
            text = b.text
            # The cluster's ports are its own; its /tmp/ files are this run's.
            sandboxed = mark in ("run", "smoke")
            if sandboxed:
                block_env, text = sandbox.env(block_env), sandbox.into(text)
            else:
                text = sandbox.paths_into(text)
            started = time.monotonic()
            code, out, err = run(b, block_env, TIMEOUT[mark], text)
            if sandboxed:
                out, err = sandbox.back_from(out), sandbox.back_from(err)
            else:
                out, err = sandbox.paths_back(out), sandbox.paths_back(err)
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
    return ran, skipped, manual


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

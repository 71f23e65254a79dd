#!/usr/bin/env bash
# Runs every wsmq test on a fresh machine: installs what is missing, then `cargo xtask ci`.
#
# Installs (only when missing): redis-server, rabbitmq-server (the AMQP engine's tests start
# their own node from it), Node.js + npm, and Debian's chromium for the browser
# suite (apt-get, when root). The npm packages of the e2e suites (npm rsmq, playwright-core) are
# installed by `cargo xtask e2e` into git-ignored node_modules folders.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The Debian package puts the real scripts in /usr/lib/rabbitmq/bin (/usr/sbin has wrappers).
[[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || command -v rabbitmq-server >/dev/null 2>&1 ||
  need_apt+=(rabbitmq-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_apt[*]}" >&2
    apt-get update -qq
    # A second try with --fix-broken: a large install (chromium) has been seen to lose its
    # downloaded .debs midway, which `apt-get install -f` repairs.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -f "${need_apt[@]}" >/dev/null
  else
    echo "test.sh: missing ${need_apt[*]}; install them (e.g. sudo apt-get install ${need_apt[*]}) and rerun" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found; install Rust from https://rustup.rs and rerun" >&2
  exit 1
fi

exec cargo xtask ci "$@"

#!/usr/bin/env bash
# Runs every wsmq test on a fresh machine: installs what is missing, then `cargo xtask ci`.
#
# Installs (only when missing): redis-server (apt-get, when root), Node.js + npm (apt-get, when root).
# The npm packages of the interop suites are installed by `cargo xtask e2e` into git-ignored folders.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${need_apt[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
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

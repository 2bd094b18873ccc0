#!/usr/bin/env bash
# Installs everything traffic-counter needs on Debian/Ubuntu (with Node 20 and a Rust toolchain
# already present) and builds it: apt packages, npm dependencies, the native addon (with the
# eBPF filter) and the TypeScript.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# clang + libbpf-dev + linux-libc-dev: the eBPF socket filter; libsqlite3-dev: the header of the
# writer's SQLite table function (native/sqlite/); python3/make/g++: better-sqlite3;
# iproute2 + iputils-ping: the namespace tests; tcpdump: the benchmark baseline; netsniff-ng:
# trafgen, the benchmarks' traffic generator (bench:live, bench:flood); chromium: the browser the
# web view's test (test/serve-browser.test.ts) and bench/serve.ts drive with playwright-core.
$SUDO apt-get install -y -qq --no-install-recommends \
  clang libbpf-dev linux-libc-dev libsqlite3-dev iproute2 iputils-ping tcpdump netsniff-ng chromium python3 make g++ ca-certificates >/dev/null
npm ci --no-audit --no-fund
npm run build

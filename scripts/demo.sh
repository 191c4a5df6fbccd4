#!/usr/bin/env bash
# The demo: the local control plane and a meshed application shaped like
# Linkerd's emojivoto (web -> emoji x2 and voting over gRPC, vote-bot sending
# steady traffic), each replica in its own network namespace beside a proxy,
# then a live table of their golden metrics (`strand viz stat`) until Ctrl-C.
# Needs root; installs the Debian packages it needs and builds the binaries.
# Arguments go to `strand demo`: `scripts/demo.sh --down` removes it all.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
if [ "$(id -u)" != 0 ]; then
  ensure_packages "${DEMO_PACKAGES[@]}" || true
  echo "the demo needs root: it creates a bridge, network namespaces and iptables rules for its pods. Run: sudo $0" >&2
  exit 77
fi
ensure_cargo
ensure_packages "${DEMO_PACKAGES[@]}"
echo "==> building (the first build takes a few minutes)"
start=$(date +%s)
cargo build --locked --quiet --bins -p strand-cli -p strand-controller -p strand-proxy -p strand-init -p strand-demo
echo "==> built in $(( $(date +%s) - start ))s"
exec target/debug/strand demo "$@"

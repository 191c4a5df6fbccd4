#!/usr/bin/env bash
# The demo: two meshed pods (network namespaces on a private bridge, real
# iptables capture, a strand-proxy in each), one exchange of every protocol
# the proxy handles, then both proxies' metrics. Needs root; installs the
# Debian packages it needs; removes everything it created when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
if [ "$(id -u)" != 0 ]; then
  echo "the demo needs root: it creates network namespaces, a bridge and iptables rules. Run: sudo $0" >&2
  exit 77
fi
ensure_cargo
ensure_packages "${TEST_PACKAGES[@]}"
echo "==> building (first build takes a few minutes)"
cargo build --workspace --bins --locked --quiet
exec target/debug/strand-netns-demo "$@"

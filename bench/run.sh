#!/usr/bin/env bash
# Builds the workspace's release binaries and runs the benchmark.
#
# As root it first installs what is missing: the Debian packages (nginx,
# wrk, h2load, iptables, iproute2, setpriv, and valgrind for --callgrind)
# and oha (with cargo). The
# benchmark itself needs root: it creates network namespaces.
#
# Usage: sudo bench/run.sh [strand-bench flags]    e.g. --quick, --runs 5
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_cargo

if [ "$(id -u)" != 0 ]; then
  echo "strand-bench needs root (it creates network namespaces): run sudo bench/run.sh $*" >&2
  exit 77
fi

packages=(iptables iproute2 util-linux)
# nginx-light is the small build; any installed nginx will do.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
command -v wrk >/dev/null || packages+=(wrk)
command -v h2load >/dev/null || packages+=(nghttp2-client)
# --callgrind runs the proxies under valgrind and talks to them with vgdb.
if [[ " $* " == *" --callgrind "* ]]; then
  command -v vgdb >/dev/null || packages+=(valgrind)
fi
ensure_packages "${packages[@]}"

oha_bin=""
for candidate in "$(command -v oha || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/oha"; do
  if [ -n "$candidate" ] && [ -x "$candidate" ]; then
    oha_bin="$candidate"
    break
  fi
done
if [ -z "$oha_bin" ]; then
  echo "==> installing oha with cargo (a few minutes)"
  cargo install oha --locked
  oha_bin="${CARGO_HOME:-$HOME/.cargo}/bin/oha"
fi

echo "==> building release binaries"
cargo build --release --workspace --bins --locked

echo "==> running strand-bench $*"
exec target/release/strand-bench --oha "$oha_bin" "$@"

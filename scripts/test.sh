#!/usr/bin/env bash
# Runs the whole test suite: unit, in-process and network-namespace tests.
#
# As root it first installs the Debian packages the network-namespace tests
# need and makes those tests mandatory (they fail instead of skipping).
# Without root, the network-namespace tests print a skip line.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
ensure_cargo
if [ "$(id -u)" = 0 ]; then
  ensure_packages "${TEST_PACKAGES[@]}"
  export STRAND_REQUIRE_ROOT_TESTS=1
else
  ensure_packages "${TEST_PACKAGES[@]}" || true
  echo "==> not root: network-namespace tests will be skipped (run with sudo to include them)"
fi
# The end-to-end tests start the workspace's binaries; build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"

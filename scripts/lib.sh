# Shared helpers for the scripts in this folder. Source it; do not run it.

# ensure_packages PKG...: installs the Debian packages that are missing when
# running as root; otherwise names them and how to install them.
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "==> missing packages: ${missing[*]}" >&2
    echo "    install them with: sudo apt-get install ${missing[*]}" >&2
    return 1
  fi
}

# ensure_cargo: fails with a clear message when the Rust toolchain is absent.
ensure_cargo() {
  if ! command -v cargo >/dev/null; then
    echo "cargo is not installed: install Rust from https://rustup.rs (or your distribution's rustc and cargo packages)" >&2
    exit 69
  fi
}

# The packages the demo needs.
DEMO_PACKAGES=(iptables iproute2 util-linux procps)
# The packages the tests need.
TEST_PACKAGES=(iptables iproute2 curl util-linux procps tcpdump prometheus chromium nginx containernetworking-plugins)

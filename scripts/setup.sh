#!/usr/bin/env bash
# Installs what building and testing warmline needs on a fresh Debian machine
# (run as root, or with sudo available). Idempotent: does nothing when all is there.
set -euo pipefail

PACKAGES=(
  cmake            # the opus crate builds the bundled libopus with CMake
  pkg-config
  libclang-dev     # bindgen, for the libespeak-ng bindings
  libespeak-ng-dev # the embedded TTS engine (whisper brief); brings espeak-ng-data
  espeak-ng-data
  espeak-ng        # regenerating the bundled prompts (scripts/make-prompts.sh)
  sox              # checking recordings by ear and by numbers
  sip-tester       # sipp: SIP trunk scenarios in tests/sip
  baresip-core     # a real SIP phone in the SIP tests (records what it heard)
  rtpengine-daemon # the media relay the e2e bench measures warmline against (smoke run in cargo test)
  chromium         # the browser tests: agent console and browser caller over WebRTC
  chromium-driver  # chromedriver, driven over WebDriver by tests/support/browser.rs
  postgresql       # the shared store of a cluster (tests: scripts/test-services.sh)
  nats-server      # messages between cluster nodes (each test starts its own)
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
command -v npm >/dev/null || missing+=(nodejs npm) # axe-core, below

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=400 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; install Rust (rustup) first" >&2
  exit 1
fi
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component"
  fi
done
# axe-core, the accessibility checker the console tests run in the page (npm
# registry), kept in the build cache outside the clone like the other downloads.
AXE_DIR="${WARMLINE_CACHE_DIR:-/var/cache/warmline}/axe"
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ]; then
  echo "setup: installing axe-core into $AXE_DIR"
  mkdir -p "$AXE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" axe-core@4 >/dev/null
fi
echo "setup: system packages OK"

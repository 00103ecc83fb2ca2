#!/usr/bin/env bash
# Installs every build tool the Worker needs, pinned, and skips what is already there.
# Sourced by build.sh, which then uses WORKER_BUILD_BIN and WASM_BINDGEN_BIN.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/cargo-tool.sh

WORKER_BUILD_VERSION=0.8.7
# wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock, or the build fails with a schema mismatch.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

install_cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build
install_cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
WORKER_BUILD_BIN="$TOOLS_DIR/worker-build-$WORKER_BUILD_VERSION/bin/worker-build"
WASM_BINDGEN_BIN="$TOOLS_DIR/wasm-bindgen-cli-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"

# npm writes node_modules/.package-lock.json on install; newer than the lockfile means up to date.
if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "==> npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

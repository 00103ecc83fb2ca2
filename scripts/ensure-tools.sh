#!/usr/bin/env bash
# Installs every build tool the Worker needs, pinned, and skips what is already there.
# Cargo tools go to .tools/ (project-local) so their versions cannot drift with global installs.
set -euo pipefail
cd "$(dirname "$0")/.."

WORKER_BUILD_VERSION=0.8.7
TOOLS_DIR="$PWD/.tools"
# wasm-bindgen-cli must equal the wasm-bindgen crate in Cargo.lock, or the build fails with a schema mismatch.
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

install_cargo_tool() { # crate version binary
  local installed
  installed=$("$TOOLS_DIR/bin/$3" --version 2>/dev/null | awk '{ print $NF }' || true)
  if [ "$installed" != "$2" ]; then
    echo "==> installing $1 $2 into .tools/ (a few minutes, once)" >&2
    cargo install --quiet --locked --root "$TOOLS_DIR" "$1" --version "$2"
  fi
}
install_cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build
install_cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen

# npm writes node_modules/.package-lock.json on install; newer than the lockfile means up to date.
if [ ! node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "==> npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error
fi

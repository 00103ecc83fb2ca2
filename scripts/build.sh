#!/usr/bin/env bash
# The build wrangler.toml runs (wrangler dev, wrangler deploy, make test): worker-build with
# local tools, because its own download of wasm-bindgen and wasm-opt cannot be relied on.
set -euo pipefail
source "$(dirname "$0")/ensure-tools.sh"
export WASM_BINDGEN_BIN
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
exec "$WORKER_BUILD_BIN" --release

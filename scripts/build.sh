#!/usr/bin/env bash
# The build wrangler.toml runs (wrangler dev, wrangler deploy, make test): worker-build with
# local tools, because its own download of wasm-bindgen and wasm-opt cannot be relied on.
set -euo pipefail
source "$(dirname "$0")/ensure-tools.sh"
export WASM_BINDGEN_BIN
export ESBUILD_BIN="$PWD/node_modules/.bin/esbuild"
export WASM_OPT_BIN="$PWD/node_modules/.bin/wasm-opt"
"$WORKER_BUILD_BIN" --release

# worker-build always keeps the function-name section (wasm-opt --debuginfo): ~250 KB raw,
# ~60 KB gzip of every cold start. Ship the wasm without it; keep the named copy of this build
# (same function indices) to read a panic's `wasm-function[N]` with `twiggy` or `wasm-objdump`.
NAMED=target/index_bg.named.wasm
cp build/index_bg.wasm "$NAMED"
# The features worker-build enables, so wasm-opt reads and writes the module unchanged.
features=(mutable-globals sign-ext nontrapping-float-to-int bulk-memory multivalue reference-types exception-handling)
"$WASM_OPT_BIN" "$NAMED" "${features[@]/#/--enable-}" --strip-debug --strip-producers -o build/index_bg.wasm

#!/usr/bin/env bash
# The wasm size budget (docs/performance.md, Size): `make test` fails when the Worker's wasm,
# gzip -9 as a cold start fetches it compressed, exceeds 400 KB. Run after `make build`.
set -euo pipefail
WASM=build/index_bg.wasm
BUDGET=409600
gzip_bytes=$(gzip -9 -c "$WASM" | wc -c)
raw_bytes=$(wc -c < "$WASM")
if (( gzip_bytes > BUDGET )); then
  echo "wasm size: $WASM is $gzip_bytes bytes gzip -9 ($raw_bytes raw), over the budget of $BUDGET (400 KB); see docs/performance.md, Size" >&2
  exit 1
fi
echo "wasm size: $gzip_bytes bytes gzip -9 ($raw_bytes raw), budget $BUDGET"

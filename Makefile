# The two commands of the README: `make dev` and `make test`. Each installs what it needs.
.PHONY: dev test lint build tools bench profile soak fuzz mutants sim clean

export WRANGLER_SEND_METRICS := false

# Pinned wasm target, worker-build, wasm-bindgen-cli (into ~/.cache/openai-edge-proxy/tools) and npm packages; fast when present.
tools:
	@bash scripts/ensure-tools.sh

# build/index.js + build/index_bg.wasm, exactly as wrangler dev/deploy build them.
build:
	@bash scripts/build.sh

dev: tools
	@node scripts/dev.mjs

# Every e2e test is bounded: a stream that never ends fails its test after 120 s instead of
# hanging make test. The slowest test (the short soak, 20 s of load and its settling) takes
# about 30 s on a 2-core machine, so 120 s is 4x headroom for one shared with builds; the
# tests' own waits are shorter still and say what they wait for.
# The wasm size budget is checked right after the build (scripts/check-size.sh).
test: lint build
	@bash scripts/check-size.sh
	@bash scripts/ensure-chromium.sh
	cargo test --locked
	node --test --test-concurrency=1 --test-timeout=120000 tests/e2e/
	node bench/run.mjs --smoke

# Formatting and lints gate `make test`: native (core, tests, mint-token) and wasm (the edge);
# the fuzz targets must compile (fuzzing itself needs nightly: make fuzz).
lint: tools
	node scripts/check-docs.mjs
	@rustup component list --installed | grep -q '^clippy' && rustup component list --installed | grep -q '^rustfmt' || rustup component add clippy rustfmt
	node scripts/check-layers.mjs
	cargo fmt --check
	cargo clippy --all-targets --locked -- -D warnings
	cargo clippy --target wasm32-unknown-unknown --lib --locked -- -D warnings
	cargo fmt --check --manifest-path fuzz/Cargo.toml
	cargo check --manifest-path fuzz/Cargo.toml --locked --quiet

# The proxy against its baselines (minutes); writes bench/results/<date>.json and a table.
bench: build
	node bench/run.mjs

# Where the Worker's CPU goes under load: a V8 profile of the named build, top functions.
profile: build
	node bench/profile.mjs

# Mixed users for minutes (clean streams, disconnects, slow readers, upstream faults, bad tokens),
# then every stream slot and reservation must be released; `make test` runs a short one.
soak: build
	node tests/soak.mjs

# The leased global budget simulated at scale (thousands of users, faulty isolates, clock skew
# across midnight): the table of docs/capacity.md. `cargo test` runs a short one.
sim:
	cargo test --release --locked --lib lease_sim -- --ignored --nocapture

# Every cargo fuzz target for FUZZ_SECONDS (default 60) each; needs nightly, installs it.
fuzz:
	@bash scripts/fuzz.sh

# Mutation testing of the code that decides charges and admissions (.cargo/mutants.toml) against
# the native tests; an hour or more on two shared cores, so not part of `make test`. Report: target/mutants/mutants.out.
mutants:
	@bash scripts/mutants.sh

clean:
	rm -rf build target .wrangler

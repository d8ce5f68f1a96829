#!/usr/bin/env bash
# Every check and every test heapspan has, in one command (the README's test command; CI runs
# exactly this). Installs what it needs (the OTLP collector) into .cache/ and reuses it.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n==> %s\n' "$*"; }
mkdir -p target
log=target/test-all.log
exec > >(tee "$log") 2>&1
tee_pid=$!

step "format"
cargo fmt --all -- --check

step "clippy (all targets, all features, warnings are errors)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

step "export feature combinations build (none, file only, each transport alone)"
cargo check -p heapspan --lib --no-default-features
cargo check -p heapspan --lib --no-default-features --features grpc
cargo check -p heapspan --lib --features tokio-metrics,tracing-opentelemetry

step "the OTLP collector (rotel, pinned wheel) in .cache/"
integration-tests/install-rotel.sh > /dev/null

step "the offline checkers of otel-config/ and the HTML view's browser (promtool, yamllint, check-jsonschema, grafana-foundation-sdk, chromium) in .cache/tools"
integration-tests/install-tools.sh > /dev/null

step "docs build without warnings (broken links included), public and private items"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --all-features -q
RUSTDOCFLAGS="-D warnings" CARGO_TARGET_DIR=target/doc-private \
  cargo doc --no-deps --all-features --document-private-items -q

step "unit, scenario, doc and integration tests"
cargo test --workspace --all-features

step "task identity and span attribution through tokio's spawn spans (--cfg tokio_unstable)"
RUSTFLAGS="--cfg tokio_unstable" CARGO_TARGET_DIR=target/unstable \
  cargo test --test identity_paths --test span_instrumentation

step "loom models of the lock-free tables, queues and the scan handshake"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --release --lib loom

step "benches compile and run once"
cargo test --benches --release

step "the tracing-opentelemetry example runs (memory attributes on the user's spans)"
cargo run --all-features --example otel_spans > target/otel_spans.out

step "the debug route example serves its report once and exits"
cargo run --release --example debug_route > target/debug_route.out
grep -Eq "^  cache  .*256.0 KiB" target/debug_route.out

step "the quickstart runs"
cargo run --release --example quickstart > target/quickstart.out
grep -q "Tasks by live bytes" target/quickstart.out
# Its three planted problems are found, and nothing else of medium or above.
loud=$(grep -E '^  (CRITICAL|HIGH|MEDIUM) ' target/quickstart.out | awk '{print $2}' | sort | tr '\n' ' ')
if [ "$loud" != "refcount.unreachable_cycle span.residue_growth task.escaped_allocation " ]; then
  echo "the quickstart's findings of medium or above are not its three planted problems: $loud"
  exit 1
fi
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
echo "all checks passed"
echo "$passed passed, $failed failed"
exec 1>&- 2>&-
wait "$tee_pid"

#!/usr/bin/env bash
# Miri runs (local hardening, not part of test-all.sh: CI machines cannot install the nightly
# `miri` component from the registries they reach). Needs `rustup +nightly component add miri`.
#
# - the pure graph code and the allocator's tables, under Miri's default (Stacked Borrows);
# - the allocator itself as the global allocator of a test program (a task allocates, another
#   thread frees after its thread-locals are gone), under Tree Borrows: Stacked Borrows flags
#   every allocator that hands out part of its block, header allocators included, when a `Box`
#   is freed (rust-lang/miri#2104, open). heapspan's threads still run when the test's main
#   returns, by design, hence `-Zmiri-ignore-leaks`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=target/miri
cargo +nightly miri test --lib -- graph:: alloc:: --skip export::
export MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-tree-borrows -Zmiri-ignore-leaks"
cargo +nightly miri test --test thread_exit
# `MIRI_INDEX=1`: the same program with the live index on, full and sampled (extended headers,
# index entries, a free from another thread, the reallocs of the runtime and the harness; about
# 20 minutes each). A whole-heap scan is not run: heaps hold never-written bytes, which the
# scan reads as integers with inline assembly (`read_word`), and which Miri rejects as
# integers from its fallback load.
if [[ "${MIRI_INDEX:-0}" == 1 ]]; then
  HEAPSPAN_LIVE_INDEX=full HEAPSPAN_MAX_THREADS=16 cargo +nightly miri test --test thread_exit
  HEAPSPAN_LIVE_INDEX=sampled HEAPSPAN_SAMPLE_MEAN_BYTES=64 HEAPSPAN_MAX_THREADS=16 \
    cargo +nightly miri test --test thread_exit
fi
echo "miri: all passed"

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
MIRIFLAGS="-Zmiri-disable-isolation -Zmiri-tree-borrows -Zmiri-ignore-leaks" \
  cargo +nightly miri test --test thread_exit
echo "miri: all passed"

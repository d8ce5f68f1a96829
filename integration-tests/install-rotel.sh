#!/usr/bin/env bash
# Installs the rotel OTLP collector (a pinned wheel, see /work/shared/design/collector.md) into
# .cache/rotel and prints the path of its binary. Reuses an existing install.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.0.1a15
DEST=.cache/rotel-$VERSION
BIN=$DEST/rotel/rotel-agent
if [ ! -x "$BIN" ]; then
  mkdir -p .cache/wheels
  pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_34_x86_64 "rotel==$VERSION" -d .cache/wheels >&2
  rm -rf "$DEST.tmp"
  unzip -q .cache/wheels/rotel-$VERSION-cp311-*.whl -d "$DEST.tmp"
  rm -rf "$DEST"
  mv "$DEST.tmp" "$DEST"
fi
"$BIN" --version >&2 || true
echo "$PWD/$BIN"

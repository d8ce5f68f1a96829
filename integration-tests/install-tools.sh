#!/usr/bin/env bash
# Installs the offline checkers of otel-config/ and the HTML view's browser, pinned, into
# .cache/tools (reused when present), and links them into .cache/tools/bin:
#   promtool          Debian's prometheus package (2.42: parses and evaluates PromQL)
#   yamllint          PyPI, in a venv
#   check-jsonschema  PyPI, in the same venv (its built-in compose-spec schema)
#   python            that venv's interpreter, with grafana-foundation-sdk (Grafana's dashboard types)
#   chromium          Debian's chromium (installed with apt-get: the tests run as root here)
# Tests look for the tools only there, and fail (never skip) when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.cache/tools
BIN=$TOOLS/bin
mkdir -p "$BIN"

if [ ! -x "$TOOLS/venv/bin/check-jsonschema" ] || [ ! -f "$TOOLS/venv/.pins-v1" ]; then
  rm -rf "$TOOLS/venv"
  python3 -m venv "$TOOLS/venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "yamllint==1.38.0" "check-jsonschema==0.39.0" "grafana-foundation-sdk==1769699379!11.6.0" >&2
  touch "$TOOLS/venv/.pins-v1"
fi
ln -sf "$PWD/$TOOLS/venv/bin/yamllint" "$BIN/yamllint"
ln -sf "$PWD/$TOOLS/venv/bin/check-jsonschema" "$BIN/check-jsonschema"
# A wrapper, not a link: Python finds its venv from the path it was started by.
rm -f "$BIN/python"
printf '#!/bin/sh\nexec "%s" "$@"\n' "$PWD/$TOOLS/venv/bin/python" > "$BIN/python"
chmod +x "$BIN/python"

if [ ! -x "$TOOLS/prometheus/usr/bin/promtool" ]; then
  rm -rf "$TOOLS/prometheus" "$TOOLS/deb"
  mkdir -p "$TOOLS/deb"
  (cd "$TOOLS/deb" && apt-get download prometheus >&2)
  dpkg-deb -x "$TOOLS"/deb/prometheus_*.deb "$TOOLS/prometheus"
fi
ln -sf "$PWD/$TOOLS/prometheus/usr/bin/promtool" "$BIN/promtool"

if [ ! -x /usr/bin/chromium ]; then
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > .cache/tools/apt.log 2>&1; then
    apt-get update -qq >> .cache/tools/apt.log 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium > .cache/tools/apt.log 2>&1
  fi
fi
ln -sf /usr/bin/chromium "$BIN/chromium"

for tool in promtool yamllint check-jsonschema python chromium; do
  "$BIN/$tool" --version >&2 2>&1 | head -1 >&2 || { echo "install-tools: $tool does not run" >&2; exit 1; }
done
echo "$PWD/$BIN"

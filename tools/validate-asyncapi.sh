#!/usr/bin/env bash
# Validates docs/asyncapi.yaml with @asyncapi/parser (tools/validate-asyncapi.mjs):
# parser errors fail, warnings are printed; every example must match its schema.
# The parser is installed once with npm into a cache folder outside the repo.
#
#   bash tools/validate-asyncapi.sh [FILE]      (default docs/asyncapi.yaml)
#   ASYNCAPI_CACHE=DIR   npm install folder (default ~/.cache/crypto-ticker-asyncapi)
set -euo pipefail
cd "$(dirname "$0")/.."

PARSER_VERSION=3.6.6
cache="${ASYNCAPI_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/crypto-ticker-asyncapi}/parser-$PARSER_VERSION"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "validate-asyncapi: $tool not found (Node.js and npm are needed)" >&2
    exit 1
  fi
done

# The stamp is written only after a complete install, so an interrupted one is redone.
if [ ! -f "$cache/.installed" ]; then
  echo "installing @asyncapi/parser@$PARSER_VERSION into $cache"
  rm -rf "$cache"
  mkdir -p "$cache"
  # --ignore-scripts: the tree's one install script only reports analytics.
  npm install --prefix "$cache" --save-exact --ignore-scripts --no-audit --no-fund \
    --loglevel=error "@asyncapi/parser@$PARSER_VERSION" >/dev/null
  touch "$cache/.installed"
fi

ASYNCAPI_MODULES="$cache" node tools/validate-asyncapi.mjs "${1:-docs/asyncapi.yaml}"

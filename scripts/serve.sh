#!/usr/bin/env bash
# Builds the page with Trunk and serves it on http://127.0.0.1:8080 (installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec trunk serve --release "$@"

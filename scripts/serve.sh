#!/usr/bin/env bash
# Builds the page with Trunk and serves it on http://127.0.0.1:8080 (installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Trunk's live-reload script is injected inline, which the page's Content-Security-Policy
# (script-src 'self') refuses with a console error: off unless asked for
# (TRUNK_SERVE_NO_AUTORELOAD=false bash scripts/serve.sh while editing www/).
export TRUNK_SERVE_NO_AUTORELOAD=${TRUNK_SERVE_NO_AUTORELOAD:-true}
exec trunk serve --release "$@"

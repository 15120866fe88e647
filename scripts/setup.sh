#!/usr/bin/env bash
# Installs everything the tests and the demo need on a fresh Debian machine: system packages,
# the wasm32 target and the pinned cargo tools. Each step is skipped when the exact version
# is already present, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

WASM_BINDGEN_VERSION=0.2.130   # must equal the `wasm-bindgen` pin in Cargo.toml
WASM_PACK_VERSION=0.15.1
TRUNK_VERSION=0.21.14
# The threaded wasm build only (scripts/build_threads.sh: build-std with atomics); everything
# else builds on stable. Keep in step with scripts/build_threads.sh and .github/workflows.
NIGHTLY=nightly-2026-05-20

say() { printf '\n== %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# EFFARCH_SETUP_SITE_ONLY=1: only what building the site needs (the Pages workflow); no
# browser, GPU driver, Node or Python for the tests.
SITE_ONLY=${EFFARCH_SETUP_SITE_ONLY:-0}

need_apt=()
if [ "$SITE_ONLY" != 1 ]; then
  command -v chromium >/dev/null || need_apt+=(chromium)
  command -v chromedriver >/dev/null || need_apt+=(chromium-driver)
  [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || ls /usr/share/vulkan/icd.d/lvp_icd.*.json >/dev/null 2>&1 || need_apt+=(mesa-vulkan-drivers)
  command -v node >/dev/null || need_apt+=(nodejs)
fi
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# The project's own Python (below) needs a python3 with venv; which python3 is first on PATH
# does not matter after that.
PY=$(command -v python3 || true)
if [ "$SITE_ONLY" != 1 ] && { [ -z "$PY" ] || ! "$PY" -c 'import venv, ensurepip' 2>/dev/null; }; then need_apt+=(python3 python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  say "apt: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
# npm only after nodejs: NodeSource's nodejs ships npm and conflicts with Debian's package.
if [ "$SITE_ONLY" != 1 ] && ! command -v npm >/dev/null; then
  say "apt: npm"
  [ ${#need_apt[@]} -gt 0 ] || $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq npm >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "rustup target wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown
fi

if ! rustup run "$NIGHTLY" rustc --print sysroot >/dev/null 2>&1 \
  || ! [ -d "$(rustup run "$NIGHTLY" rustc --print sysroot)/lib/rustlib/src/rust/library" ] \
  || ! rustup target list --toolchain "$NIGHTLY" --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "rustup toolchain $NIGHTLY (rust-src, wasm32) for the threaded wasm build"
  rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src --target wasm32-unknown-unknown
fi

have() { # have TOOL VERSION: the tool prints the exact version
  command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -q " $2\b"
}
if ! have wasm-bindgen "$WASM_BINDGEN_VERSION"; then
  say "cargo install wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --force
fi
if ! have wasm-pack "$WASM_PACK_VERSION"; then
  say "cargo install wasm-pack $WASM_PACK_VERSION"
  cargo install wasm-pack --version "$WASM_PACK_VERSION" --force
fi
if [ "${EFFARCH_SKIP_TRUNK:-0}" != 1 ] && ! have trunk "$TRUNK_VERSION"; then
  say "cargo install trunk $TRUNK_VERSION"
  # trunk's release profile asks for fat LTO with one codegen unit: the same code without
  # them builds in 321 s instead of 463 s on two cores (a fresh CI machine builds it every run).
  CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo install trunk --version "$TRUNK_VERSION" --locked --force
fi

if [ "$SITE_ONLY" = 1 ]; then
  exit 0
fi

# Playwright's core library only (it drives /usr/bin/chromium; it never downloads a browser).
PLAYWRIGHT_VERSION=$(sed -n 's/.*"playwright-core": "\([^"]*\)".*/\1/p' tests/e2e/package.json)
if ! grep -qs "\"version\": \"$PLAYWRIGHT_VERSION\"" tests/e2e/node_modules/playwright-core/package.json; then
  say "npm ci (tests/e2e: playwright-core $PLAYWRIGHT_VERSION)"
  (cd tests/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# A project virtualenv for the Python scripts the tests run (scripts/typeseg_check.py), with
# pinned packages from PyPI: every script runs with target/pyenv/bin/python, never with
# whichever python3 is first on PATH.
PYENV=target/pyenv
PY_REQS="numpy==2.2.6"
if ! [ -x "$PYENV/bin/python" ] || ! [ "$(cat "$PYENV/.reqs" 2>/dev/null)" = "$PY_REQS" ]; then
  say "python venv $PYENV: $PY_REQS"
  rm -rf "$PYENV"
  PY=$(command -v python3 || echo /usr/bin/python3)
  "$PY" -m venv "$PYENV"
  "$PYENV/bin/python" -m pip install -q --disable-pip-version-check $PY_REQS
  echo "$PY_REQS" > "$PYENV/.reqs"
fi

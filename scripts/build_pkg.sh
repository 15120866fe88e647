#!/usr/bin/env bash
# The npm package in pkg/: both wasm builds behind one entry point. wasm-pack writes the
# single-threaded build (effarch.js, effarch_bg.wasm, effarch.d.ts), scripts/build_threads.sh
# the multi-threaded one into pkg/threads/, and index.js (= www/engine.js) picks between them
# at load: `import loadEngine from 'effarch'; const { engine, threads } = await loadEngine();`.
set -euo pipefail
cd "$(dirname "$0")/.."
wasm-pack build --target web --release
bash scripts/build_threads.sh pkg/threads
rm -f pkg/threads/package.json pkg/threads/.gitignore
cp www/engine.js pkg/index.js
cp scripts/pkg/index.d.ts pkg/index.d.ts
node -e '
const fs = require("fs");
const p = JSON.parse(fs.readFileSync("pkg/package.json", "utf8"));
p.files = [...new Set([...(p.files || []), "index.js", "index.d.ts", "threads/"])];
p.main = "index.js";
p.module = "index.js";
p.types = "index.d.ts";
p.exports = { ".": { types: "./index.d.ts", default: "./index.js" }, "./single": "./effarch.js", "./threads": "./threads/effarch.js" };
p.sideEffects = ["./snippets/*", "./threads/snippets/*"];
fs.writeFileSync("pkg/package.json", JSON.stringify(p, null, 2) + "\n");
'
echo "pkg/: $(du -sh pkg | cut -f1) (single-threaded + threads/), entry index.js"

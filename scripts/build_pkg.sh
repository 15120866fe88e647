#!/usr/bin/env bash
# The npm package in pkg/: both wasm builds behind one entry point. wasm-pack writes the
# single-threaded build (effarch.js, effarch_bg.wasm, effarch.d.ts), scripts/build_threads.sh
# the multi-threaded one into pkg/threads/ and its relaxed-SIMD variant into
# pkg/threads-relaxed/, and index.js (= www/engine.js) picks among them at load: `import loadEngine from 'effarch'; const { engine, threads } = await loadEngine();`.
set -euo pipefail
cd "$(dirname "$0")/.."
wasm-pack build --target web --release
bash scripts/build_threads.sh pkg/threads
bash scripts/build_threads.sh pkg/threads-relaxed relaxed
rm -f pkg/threads/package.json pkg/threads/.gitignore pkg/threads-relaxed/package.json pkg/threads-relaxed/.gitignore
cp www/engine.js pkg/index.js
cp scripts/pkg/index.d.ts pkg/index.d.ts
node -e '
const fs = require("fs");
const p = JSON.parse(fs.readFileSync("pkg/package.json", "utf8"));
p.files = [...new Set([...(p.files || []), "index.js", "index.d.ts", "threads/", "threads-relaxed/"])];
p.main = "index.js";
p.module = "index.js";
p.types = "index.d.ts";
p.exports = { ".": { types: "./index.d.ts", default: "./index.js" }, "./single": "./effarch.js", "./threads": "./threads/effarch.js", "./threads-relaxed": "./threads-relaxed/effarch.js" };
p.sideEffects = ["./snippets/*", "./threads/snippets/*", "./threads-relaxed/snippets/*"];
fs.writeFileSync("pkg/package.json", JSON.stringify(p, null, 2) + "\n");
'
echo "pkg/: $(du -sh pkg | cut -f1) (single-threaded + threads/ + threads-relaxed/), entry index.js"

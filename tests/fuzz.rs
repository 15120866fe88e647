//! Mutation fuzzing of every parser of untrusted bytes, on stable Rust and inside
//! `cargo test`: safetensors files and headers, the shard index, images (decode and both
//! processors), `config.json` of each model, `tokenizer.json`, `vocab.json` + `merges.txt`,
//! and the run options the page passes (scorer strings, keep, layers). The seed corpus is the
//! committed fixtures plus `tests/fuzz-corpus/`; each target mutates it (bit flips, byte
//! runs, truncation, splices, JSON values swapped for extremes): a fixed number of executions
//! a target by default (deterministic, so CI tries the same inputs every time), or a campaign of
//! `EFFARCH_FUZZ_SECS` seconds a target. It fails on any panic, writing the input to
//! `target/fuzz-failures/` to replay; an input over 60 s fails as a hang; with
//! `EFFARCH_FUZZ_TRACE` set each input is written to `target/fuzz-current-<target>` first, for
//! aborts (allocation failures) that no handler catches. Errors are fine.

#![cfg(not(target_arch = "wasm32"))]

use effarch::models::clip::{ClipConfig, Tokenizer};
use effarch::models::lm::ByteBpe;
use effarch::models::mamba::MambaConfig;
use effarch::models::qwen::{ProcessorConfig, QwenConfig};
use effarch::weights::Weights;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The seed inputs of one target: fixture files, and any files under tests/fuzz-corpus/<name>/.
fn corpus(name: &str, files: &[&str]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    if let Ok(dir) = std::fs::read_dir(root().join("tests/fuzz-corpus").join(name)) {
        let mut extra: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        extra.sort();
        out.extend(extra.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    out
}

/// xorshift64*: deterministic per target, so a failure replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1e308",
    "-1e308",
    "4294967296",
    "18446744073709551616",
    "1.5",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "[[[[[[[[]]]]]]]]",
    "\"\\u0000\"",
    "NaN",
    "99999999",
];

/// One mutation of `input`, `other` for splices.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0u8, 0xff, 0x7f, 0x80, b'"', b'{', b'[', b'9'][rng.below(8)];
            }
            2 if len > 0 => v.truncate(rng.below(len)),
            3 if len > 0 => {
                let (a, n) = (rng.below(len), 1 + rng.below(64));
                v.drain(a..(a + n).min(len));
            }
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(32);
                let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(at..at, junk);
            }
            5 if !other.is_empty() => {
                let at = rng.below(len + 1);
                let (a, n) = (rng.below(other.len()), 1 + rng.below(256));
                v.splice(at..at, other[a..(a + n).min(other.len())].iter().copied());
            }
            6 => {
                // A JSON number, string or literal swapped for an extreme value.
                let s = String::from_utf8_lossy(&v).into_owned();
                let spots: Vec<usize> = s.char_indices().filter(|(_, c)| *c == ':' || *c == ',').map(|(i, _)| i + 1).collect();
                if !spots.is_empty() {
                    let at = spots[rng.below(spots.len())];
                    let end = s[at..].find([',', '}', ']']).map_or(s.len(), |e| at + e);
                    let mut t = s[..at].to_string();
                    t.push_str(EXTREMES[rng.below(EXTREMES.len())]);
                    t.push_str(&s[end..]);
                    v = t.into_bytes();
                }
            }
            _ => {
                // A safetensors header length or an 8-byte field rewritten.
                if len >= 8 {
                    let at = if rng.below(2) == 0 { 0 } else { rng.below(len - 7) };
                    let val = [0u64, 1, 7, u64::MAX, (len as u64).wrapping_sub(8), 1 << 40][rng.below(6)];
                    v[at..at + 8].copy_from_slice(&val.to_le_bytes());
                }
            }
        }
    }
    v
}

/// Runs `target` on mutations of `seeds` for the time budget (or `default_runs` executions); panics (in the target) fail
/// the test with the input saved. Returns the number of executions.
fn fuzz(name: &str, default_runs: usize, seeds: &[Vec<u8>], target: impl Fn(&[u8])) -> usize {
    // A campaign runs for EFFARCH_FUZZ_SECS; by default (CI) a fixed number of executions, so
    // every run tries the very same inputs whatever the machine's speed.
    let secs: Option<f64> = std::env::var("EFFARCH_FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let done = |runs: usize, start: Instant| match secs {
        Some(s) => start.elapsed() >= Duration::from_secs_f64(s),
        None => runs >= default_runs,
    };
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)));
    let start = Instant::now();
    let mut runs = 0usize;
    let mut slowest = Duration::ZERO;
    let trace = std::env::var_os("EFFARCH_FUZZ_TRACE").is_some();
    // The seeds themselves first.
    let mut queue: Vec<Vec<u8>> = seeds.to_vec();
    loop {
        let input = match queue.pop() {
            Some(i) => i,
            None => {
                if done(runs, start) {
                    break;
                }
                let (a, b) = (&seeds[rng.below(seeds.len())], &seeds[rng.below(seeds.len())]);
                mutate(&mut rng, a, b)
            }
        };
        if trace {
            // The input about to run, for crashes a panic handler cannot catch (an abort).
            std::fs::write(root().join(format!("target/fuzz-current-{name}")), &input).ok();
        }
        let t0 = Instant::now();
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let dir = root().join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).ok();
            let path = dir.join(format!("{name}-{runs}"));
            std::fs::write(&path, &input).ok();
            panic!("fuzz target `{name}` panicked on input {} ({} bytes)", path.display(), input.len());
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(60), "fuzz target `{name}` took {took:?} on one input (a hang)");
        if took > slowest && took > Duration::from_secs(1) {
            // Kept for a look: slow is not a failure, but it may be a quadratic path.
            let dir = root().join("target/fuzz-slow");
            std::fs::create_dir_all(&dir).ok();
            std::fs::write(dir.join(name), &input).ok();
        }
        slowest = slowest.max(took);
        runs += 1;
    }
    println!("fuzz {name}: {runs} executions in {:.1} s, 0 panics, slowest input {:.0} ms", start.elapsed().as_secs_f64(), slowest.as_secs_f64() * 1e3);
    runs
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn fuzz_safetensors() {
    let seeds = corpus("safetensors", &["tests/fixtures/clip-tiny/model.safetensors", "tests/fixtures/mamba-tiny/model.safetensors"]);
    fuzz("safetensors", 3000, &seeds, |b| {
        if let Ok(w) = Weights::from_bytes("fuzz.safetensors", b.to_vec()) {
            let names: Vec<String> = w.names().map(String::from).collect();
            for n in names.iter().take(64) {
                let shape = w.info(n).map(|i| i.shape.clone()).unwrap_or_default();
                let _ = w.get_f32(n, &shape);
                if shape.len() == 2 {
                    let _ = w.get_linear(n, [shape[0], shape[1]], &effarch::tensor::Device::cpu());
                }
            }
        }
    });
}

#[test]
fn fuzz_safetensors_header_and_shard_index() {
    let header = |json: &str| {
        let mut v = (json.len() as u64).to_le_bytes().to_vec();
        v.extend(json.as_bytes());
        v.extend([0u8; 64]);
        v
    };
    let mut seeds = vec![
        header(r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}}"#),
        header(r#"{"b":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},"c":{"dtype":"F16","shape":[1,4],"data_offsets":[8,16]}}"#),
    ];
    seeds.extend(corpus("header", &["tests/fixtures/qwen-tiny/model.safetensors.index.json"]));
    let dir = std::env::temp_dir().join(format!("effarch-fuzz-index-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    fuzz("header", 20000, &seeds, |b| {
        if let Ok(w) = Weights::from_bytes("fuzz.safetensors", b.to_vec()) {
            for n in w.names().map(String::from).collect::<Vec<_>>() {
                let shape = w.info(&n).map(|i| i.shape.clone()).unwrap_or_default();
                let _ = w.get_f32(&n, &shape);
            }
        }
        // The same bytes as a shard index: the names it gives, and loading from it.
        std::fs::write(dir.join("model.safetensors.index.json"), b).unwrap();
        let _ = effarch::models::qwen::shard_names(&dir);
        let _ = effarch::models::qwen::load_checkpoint(&dir);
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn fuzz_images_and_processors() {
    let seeds = corpus("images", &["tests/fixtures/clip-tiny/tiny_20x30.png", "tests/fixtures/qwen-tiny/image_300x200.png", "www/samples/chelsea-cat.jpg"]);
    let clip = ClipConfig::from_json("config.json", &text(&read("tests/fixtures/clip-tiny/config.json"))).unwrap();
    let pre = effarch::image::ClipPreprocess::new(clip.vision().image_size as u32);
    let qcfg = QwenConfig::from_json("config.json", &text(&read("tests/fixtures/qwen-tiny/config.json"))).unwrap();
    let qproc = ProcessorConfig::from_json("preprocessor_config.json", &text(&read("tests/fixtures/qwen-tiny/preprocessor_config.json"))).unwrap();
    fuzz("images", 3000, &seeds, |b| {
        if let Ok(img) = effarch::image::decode(b) {
            let _ = pre.pixel_values(&img);
            let _ = effarch::models::qwen::processor::preprocess(&img, &qcfg.vision, &qproc);
        }
    });
}

/// Our libjpeg-turbo-exact decoder on its own, seeded with the small JPEGs of every layout it
/// covers (4:2:0, 4:2:2, 4:4:4, grey, restart intervals, a 3-pixel-wide image, progressive).
#[test]
fn fuzz_jpeg_decoder() {
    let files: Vec<String> = ["cat_420_odd", "cat_422", "cat_444", "cat_grey", "cat_restart", "cat_thin", "cat_progressive", "cat_progressive_444_restart"]
        .iter()
        .map(|n| format!("tests/fixtures/jpeg/{n}.jpg"))
        .collect();
    let seeds = corpus("jpeg", &files.iter().map(String::as_str).collect::<Vec<_>>());
    fuzz("jpeg", 5000, &seeds, |b| {
        let _ = effarch::image::jpeg::decode(b);
    });
}

#[test]
fn fuzz_configs() {
    let seeds = corpus(
        "configs",
        &[
            "tests/fixtures/clip-tiny/config.json",
            "tests/fixtures/mamba-tiny/config.json",
            "tests/fixtures/qwen-tiny/config.json",
            "tests/fixtures/qwen-tiny/preprocessor_config.json",
        ],
    );
    fuzz("configs", 50000, &seeds, |b| {
        let s = text(b);
        let _ = ClipConfig::from_json("config.json", &s);
        let _ = MambaConfig::from_json("config.json", &s);
        let _ = QwenConfig::from_json("config.json", &s);
        let _ = ProcessorConfig::from_json("preprocessor_config.json", &s);
    });
}

#[test]
fn fuzz_tokenizer_json() {
    let seeds = corpus("tokenizer", &["tests/fixtures/mamba-tiny/tokenizer.json", "tests/fixtures/qwen-tiny/tokenizer.json"]);
    fuzz("tokenizer", 20000, &seeds, |b| {
        if let Ok(t) = ByteBpe::from_tokenizer_json(&text(b)) {
            for s in ["Hello world", "it's 2024 <|im_start|> naïve 東京 🚀", "", "\u{0}\u{301}a\u{30a}"] {
                if let Ok(ids) = t.encode(s) {
                    let _ = t.decode(&ids);
                }
            }
            let _ = t.decode(&[0, 1, u32::MAX]);
        }
        let _ = Tokenizer::from_tokenizer_json(&text(b));
    });
}

#[test]
fn fuzz_vocab_and_merges() {
    let (vocab, merges) = (read("tests/fixtures/clip-tiny/vocab.json"), read("tests/fixtures/clip-tiny/merges.txt"));
    let seeds = corpus("vocab-merges", &["tests/fixtures/clip-tiny/vocab.json", "tests/fixtures/clip-tiny/merges.txt"]);
    fuzz("vocab-merges", 20000, &seeds, |b| {
        // The mutated file as the vocabulary, then as the merges.
        for (v, m) in [(b, &merges[..]), (&vocab[..], b)] {
            if let Ok(t) = Tokenizer::from_vocab_merges(&text(v), &text(m)) {
                let _ = t.encode("a photo of a cat, naïve 東京 🚀", 77);
                let _ = t.encode(&"x".repeat(5000), 77);
            }
        }
    });
}

#[test]
fn fuzz_run_options() {
    // The page's options reach the core as a scorer string, keep, layers and a seed.
    let seeds: Vec<Vec<u8>> = ["kq-norm", "kq-norm:query", "kq-norm:both", "cls-attn", "random", "tome"].iter().map(|s| s.as_bytes().to_vec()).collect();
    fuzz("options", 50000, &seeds, |b| {
        let s = text(b);
        let scorer = s.parse::<effarch::prune::Scorer>();
        let n = b.iter().fold(0u64, |h, &x| h.wrapping_mul(131).wrapping_add(x as u64));
        let keep = f32::from_bits(n as u32);
        let layers: Vec<usize> = b.iter().take(6).map(|&x| x as usize % 40).collect();
        if let Ok(sc) = scorer {
            let _ = effarch::prune::PruneConfig::new(sc, keep, layers.clone());
            let _ = effarch::prune::PruneConfig::new(sc, (n % 1000) as f32 / 999.0, layers);
        }
    });
}

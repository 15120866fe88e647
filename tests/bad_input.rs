//! Bad input gets a clear error naming what was wrong, never a panic.
#![cfg(not(target_arch = "wasm32"))]

use effarch::models::clip::{self, Clip, ClipConfig};
use effarch::tensor::Device;
use effarch::weights::{serialize_f32, Weights};
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
}

fn err_of<T>(r: effarch::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

/// A PNG with an IHDR chunk claiming `w`×`h` and almost no pixel data.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    out.extend(13u32.to_be_bytes());
    out.extend(&ihdr);
    out.extend(crc32(&ihdr).to_be_bytes());
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    out.extend(((idat.len() - 4) as u32).to_be_bytes());
    out.extend(idat);
    out.extend(crc32(idat).to_be_bytes());
    out
}

#[test]
fn images_empty_truncated_corrupt_unsupported_huge() {
    let good = std::fs::read(fixture_dir().join("cat_300x257.png")).unwrap();
    assert!(effarch::image::decode(&good).is_ok());

    assert!(err_of(effarch::image::decode(&[])).contains("empty"));
    let e = err_of(effarch::image::decode(&good[..good.len() / 2]));
    assert!(e.contains("cannot decode") && e.contains("300x257"), "{e}");
    let mut corrupt = good.clone();
    for b in corrupt.iter_mut().skip(100).take(2000) {
        *b ^= 0x5A;
    }
    assert!(effarch::image::decode(&corrupt).is_err());
    let e = err_of(effarch::image::decode(b"II*\0 this is not an image"));
    assert!(e.contains("unsupported image format Tiff"), "{e}");
    let e = err_of(effarch::image::decode(b"plain text, no image at all"));
    assert!(e.contains("unsupported"), "{e}");

    let e = err_of(effarch::image::decode(&png_header(30000, 30000)));
    assert!(e.contains("30000x30000") && e.contains("limit"), "{e}");
    let e = err_of(effarch::image::decode(&png_header(0, 10)));
    assert!(!e.is_empty());
}

fn fixture_tensors() -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let w = Weights::from_file(&fixture_dir().join("model.safetensors")).unwrap();
    let mut names: Vec<String> = w.names().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let shape = w.info(&n).unwrap().shape.clone();
            let v = w.get_f32(&n, &shape).unwrap();
            (n, shape, v)
        })
        .collect()
}

fn config() -> ClipConfig {
    ClipConfig::from_json("config.json", &std::fs::read_to_string(fixture_dir().join("config.json")).unwrap()).unwrap()
}

#[test]
fn safetensors_bad_header_length_and_truncation() {
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    assert!(err_of(Weights::from_bytes("x.safetensors", vec![1, 2, 3])).contains("too short"));
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = err_of(Weights::from_bytes("x.safetensors", huge));
    assert!(e.contains("x.safetensors") && e.contains("limit"), "{e}");
    let mut past = bytes.clone();
    past[..8].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    assert!(err_of(Weights::from_bytes("x.safetensors", past)).contains("past the end"));
    let e = err_of(Weights::from_bytes("x.safetensors", bytes[..bytes.len() - 100].to_vec()));
    assert!(e.contains("truncated"), "{e}");
    let mut notjson = bytes.clone();
    notjson[8] = b'#';
    assert!(err_of(Weights::from_bytes("x.safetensors", notjson)).contains("JSON"));
}

#[test]
fn safetensors_missing_tensor_wrong_shape_wrong_dtype() {
    let t = fixture_tensors();
    let missing: Vec<_> = t.iter().filter(|(n, _, _)| !n.contains("layers.2.mlp.fc1.weight")).cloned().collect();
    let w = Weights::from_bytes("m.safetensors", serialize_f32(&missing)).unwrap();
    let e = err_of(Clip::load(config(), &w, &Device::cpu(), false));
    assert!(e.contains("vision_model.encoder.layers.2.mlp.fc1.weight") && e.contains("missing"), "{e}");

    let reshaped: Vec<_> = t
        .iter()
        .map(|(n, s, v)| if n == "visual_projection.weight" { (n.clone(), vec![s[1], s[0]], v.clone()) } else { (n.clone(), s.clone(), v.clone()) })
        .collect();
    let w = Weights::from_bytes("m.safetensors", serialize_f32(&reshaped)).unwrap();
    let e = err_of(Clip::load(config(), &w, &Device::cpu(), false));
    assert!(e.contains("visual_projection.weight") && e.contains("[48, 24]") && e.contains("[24, 48]"), "{e}");

    let header = r#"{"visual_projection.weight":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 8]);
    let w = Weights::from_bytes("d.safetensors", bytes).unwrap();
    let e = err_of(w.get_f32("visual_projection.weight", &[1]));
    assert!(e.contains("I64") && e.contains("visual_projection.weight"), "{e}");

    let header = r#"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 8]);
    let e = err_of(Weights::from_bytes("s.safetensors", bytes));
    assert!(e.contains("`a`") && e.contains("16 bytes"), "{e}");
}

#[test]
fn config_missing_or_wrong() {
    let dir = std::env::temp_dir().join(format!("effarch-noconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = err_of(clip::load_dir(&dir, &Device::cpu(), false));
    assert!(e.contains("config.json"), "{e}");
    std::fs::remove_dir_all(&dir).ok();

    assert!(err_of(ClipConfig::from_json("c.json", "{not json")).contains("c.json"));
    assert!(err_of(ClipConfig::from_json("c.json", r#"{"text_config": {}}"#)).contains("vision_config"));
    let e = err_of(ClipConfig::from_json("c.json", r#"{"vision_config": {"hidden_size": 50, "num_attention_heads": 12}}"#));
    assert!(e.contains("50") && e.contains("12"), "{e}");
    let e = err_of(ClipConfig::from_json("c.json", r#"{"vision_config": {"image_size": 100, "patch_size": 16}}"#));
    assert!(e.contains("patch_size"), "{e}");
    let e = err_of(ClipConfig::from_json("c.json", r#"{"vision_config": {"hidden_size": "wide"}}"#));
    assert!(e.contains("c.json"), "{e}");
}

#[test]
fn run_rejects_bad_options_without_panicking() {
    let model = clip::load_dir(&fixture_dir(), &Device::cpu(), true).unwrap();
    let img = std::fs::read(fixture_dir().join("tiny_20x30.png")).unwrap();
    let cfg = effarch::prune::PruneConfig::new("kq-norm".parse().unwrap(), 0.5, vec![7]).unwrap();
    let opts = clip::RunOptions { prune: Some(cfg), ..Default::default() };
    assert!(err_of(model.run(&img, &opts)).contains("out of range"));
    let opts = clip::RunOptions { labels: vec!["  ".into()], ..Default::default() };
    assert!(err_of(model.run(&img, &opts)).contains("empty"));
    assert!(err_of(model.run(b"", &Default::default())).contains("empty"));
    let long = vec!["word ".repeat(200)];
    let r = model.run(&img, &clip::RunOptions { labels: long, ..Default::default() });
    assert!(r.is_ok(), "long labels are truncated to the context length");
}

/// A NaN or ∞ in a checkpoint is an error naming the tensor (f32 and half), and weights that
/// overflow f32 on the way give an error naming the output, never NaN embeddings.
#[test]
fn non_finite_weights_and_outputs_are_errors() {
    use effarch::weights::{serialize, Dtype};
    let dir = fixture_dir();
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let w = Weights::from_file(&dir.join("model.safetensors")).unwrap();
    let name = "vision_model.encoder.layers.0.mlp.fc1.weight";
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = w
        .names()
        .map(|n| {
            let s = w.info(n).unwrap().shape.clone();
            (n.to_string(), s.clone(), w.get_f32(n, &s).unwrap())
        })
        .collect();
    for (value, dtype) in [(f32::NAN, Dtype::F32), (f32::INFINITY, Dtype::F32), (f32::NAN, Dtype::F16), (f32::NEG_INFINITY, Dtype::BF16)] {
        let mut t = tensors.clone();
        t.iter_mut().find(|(n, _, _)| n == name).unwrap().2[7] = value;
        let bad = Weights::from_bytes("bad.safetensors", serialize(&t, dtype)).unwrap();
        let e = err_of(Clip::load(ClipConfig::from_json("config.json", &cfg).unwrap(), &bad, &Device::cpu(), false));
        assert!(e.contains(name) && e.contains("non-finite") && e.contains("index 7"), "{dtype:?}: {e}");
    }
    // Finite weights whose product overflows: the output check names it.
    for (_, _, v) in tensors.iter_mut().filter(|(n, _, _)| n.contains("visual_projection") || n.contains("post_layernorm.weight")) {
        v.iter_mut().for_each(|x| *x = 3e38);
    }
    let big = Weights::from_bytes("big.safetensors", serialize_f32(&tensors)).unwrap();
    let m = Clip::load(ClipConfig::from_json("config.json", &cfg).unwrap(), &big, &Device::cpu(), false).unwrap();
    let img = std::fs::read(dir.join("cat_300x257.png")).unwrap();
    let e = err_of(m.run(&img, &Default::default()));
    assert!(e.contains("non-finite") && e.contains("image_embeds"), "{e}");
}

#[test]
fn too_many_labels_is_an_error_naming_the_limit() {
    let m = clip::load_dir(&fixture_dir(), &Device::cpu(), true).unwrap();
    let labels: Vec<String> = (0..=clip::MAX_LABELS).map(|i| format!("label {i}")).collect();
    let e = err_of(m.encode_text(&labels));
    assert!(e.contains(&format!("over the limit of {}", clip::MAX_LABELS)), "{e}");
}

/// A tokenizer.json with an id far past its number of tokens is an error naming the token,
/// not a multi-gigabyte id table (found by tests/fuzz.rs).
#[test]
fn tokenizer_with_a_huge_id_is_an_error() {
    let good = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny/tokenizer.json")).unwrap();
    assert!(effarch::models::lm::ByteBpe::from_tokenizer_json(&good).is_ok());
    for id in ["99999999", "4294967295"] {
        let bad = good.replacen("\"\u{b8}\": 116", &format!("\"\u{b8}\": {id}"), 1);
        assert_ne!(bad, good);
        let e = err_of(effarch::models::lm::ByteBpe::from_tokenizer_json(&bad));
        assert!(e.contains(id) && e.contains("only"), "{e}");
    }
}

/// An empty added token (found by tests/fuzz.rs: it split the text without end until memory
/// ran out) is ignored.
#[test]
fn tokenizer_with_an_empty_added_token_still_encodes() {
    let good = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen-tiny/tokenizer.json")).unwrap();
    let bad = good.replacen("\"content\": \"<|im_end|>\"", "\"content\": \"\"", 1);
    assert_ne!(bad, good);
    let t = effarch::models::lm::ByteBpe::from_tokenizer_json(&bad).unwrap();
    let ids = t.encode("Describe the image.").unwrap();
    assert!(!ids.is_empty() && ids.len() < 20, "{ids:?}");
}

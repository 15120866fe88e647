//! Byte-level BPE pieces shared by the tokenizers (CLIP's, GPT-NeoX's for Mamba): GPT-2's
//! byte ↔ character map, `tokenizer.json` model parsing, and the merge loop.

use crate::error::{Error, Result};
use std::collections::HashMap;

/// GPT-2's reversible byte → printable character map.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut map = ['\0'; 256];
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut n = 0;
    for b in 0..256u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        map[b as usize] = char::from_u32(c).unwrap_or('?');
    }
    map
}

/// `model.vocab` and `model.merges` of a `tokenizer.json` (merges as "a b" or ["a", "b"]).
pub fn vocab_merges_from_tokenizer_json(v: &serde_json::Value) -> Result<(HashMap<String, u32>, Vec<(String, String)>)> {
    let model = v.get("model").ok_or_else(|| Error::Tokenizer("tokenizer.json: no `model`".into()))?;
    let vocab: HashMap<String, u32> =
        serde_json::from_value(model.get("vocab").cloned().unwrap_or_default()).map_err(|e| Error::Tokenizer(format!("tokenizer.json model.vocab: {e}")))?;
    let merges = model
        .get("merges")
        .and_then(|m| m.as_array())
        .ok_or_else(|| Error::Tokenizer("tokenizer.json: no `model.merges`".into()))?
        .iter()
        .map(|m| {
            let pair = match m {
                serde_json::Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
                serde_json::Value::Array(a) => match (a.first().and_then(|x| x.as_str()), a.get(1).and_then(|x| x.as_str())) {
                    (Some(x), Some(y)) => Some((x.to_string(), y.to_string())),
                    _ => None,
                },
                _ => None,
            };
            pair.ok_or_else(|| Error::Tokenizer(format!("tokenizer.json: bad merge {m}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok((vocab, merges))
}

/// Merge ranks: the earlier a pair appears, the sooner it is merged.
pub type Ranks = HashMap<(String, String), usize>;

pub fn ranks(merges: Vec<(String, String)>) -> Ranks {
    merges.into_iter().enumerate().map(|(i, p)| (p, i)).collect()
}

/// Merges `parts` (one symbol each at first) by rank until no ranked pair is left.
pub fn merge(mut parts: Vec<String>, ranks: &Ranks) -> Vec<String> {
    loop {
        let best = parts.windows(2).enumerate().filter_map(|(i, w)| ranks.get(&(w[0].clone(), w[1].clone())).map(|&r| (r, i))).min();
        let Some((_, i)) = best else { break };
        let (a, b) = (parts[i].clone(), parts[i + 1].clone());
        let mut merged = Vec::with_capacity(parts.len());
        let mut j = 0;
        while j < parts.len() {
            if j + 1 < parts.len() && parts[j] == a && parts[j + 1] == b {
                merged.push(format!("{a}{b}"));
                j += 2;
            } else {
                merged.push(parts[j].clone());
                j += 1;
            }
        }
        parts = merged;
    }
    parts
}

//! CLIP's byte-level BPE tokenizer, read from `vocab.json` + `merges.txt` or `tokenizer.json`.
//!
//! Same steps as transformers' `CLIPTokenizer`: collapse whitespace and lowercase; split into
//! words with CLIP's pattern (special tokens, contractions, letter runs, single digits, runs
//! of other symbols); map bytes to printable characters; BPE with `</w>` marking a word's end;
//! wrap in start/end tokens.

use crate::error::{Error, Result};
use std::collections::HashMap;

const BOS: &str = "<|startoftext|>";
const EOS: &str = "<|endoftext|>";
pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_WORD_BYTES: usize = 256;

pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    ranks: bpe::Ranks,
    byte_char: [char; 256],
    pub bos: u32,
    pub eos: u32,
}

use crate::models::bpe::{self, bytes_to_unicode};

impl Tokenizer {
    pub fn from_vocab_merges(vocab_json: &str, merges_txt: &str) -> Result<Self> {
        let vocab: HashMap<String, u32> = serde_json::from_str(vocab_json).map_err(|e| Error::Tokenizer(format!("vocab.json: {e}")))?;
        let merges = merges_txt
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| {
                let mut it = l.split(' ');
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
                    _ => Err(Error::Tokenizer(format!("merges.txt: bad line `{l}`"))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(vocab, merges)
    }

    pub fn from_tokenizer_json(json: &str) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        let (vocab, merges) = bpe::vocab_merges_from_tokenizer_json(&v)?;
        Self::new(vocab, merges)
    }

    fn new(vocab: HashMap<String, u32>, merges: Vec<(String, String)>) -> Result<Self> {
        let id = |t: &str| vocab.get(t).copied().ok_or_else(|| Error::Tokenizer(format!("vocabulary lacks `{t}`")));
        let (bos, eos) = (id(BOS)?, id(EOS)?);
        let ranks = bpe::ranks(merges);
        Ok(Tokenizer { vocab, ranks, byte_char: bytes_to_unicode(), bos, eos })
    }

    /// `<|startoftext|> tokens… <|endoftext|>`, cut to `max_len` (the end token kept).
    /// Text past [`MAX_TEXT_CHARS`] is ignored (far beyond any context length), and words are
    /// cut to [`MAX_WORD_BYTES`], so BPE's quadratic merge loop stays bounded.
    pub fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let text: String = text.chars().take(MAX_TEXT_CHARS).collect();
        let norm = text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        let mut ids = vec![self.bos];
        for word in split_words(&norm) {
            match word {
                BOS => ids.push(self.bos),
                EOS => ids.push(self.eos),
                w => {
                    let mapped: String = w.bytes().take(MAX_WORD_BYTES).map(|b| self.byte_char[b as usize]).collect();
                    for piece in self.bpe(&mapped) {
                        ids.push(self.vocab.get(&piece).copied().unwrap_or(self.eos));
                    }
                }
            }
        }
        ids.truncate(max_len.max(2) - 1);
        ids.push(self.eos);
        ids
    }

    fn bpe(&self, word: &str) -> Vec<String> {
        let mut parts: Vec<String> = word.chars().map(|c| c.to_string()).collect();
        if let Some(last) = parts.last_mut() {
            last.push_str("</w>");
        }
        bpe::merge(parts, &self.ranks)
    }
}

/// CLIP's pre-tokenizer pattern, leftmost alternative first:
/// `<|startoftext|>|<|endoftext|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`
fn split_words(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let Some(c) = rest.chars().next() else { break };
        let len = if let Some(t) = [BOS, EOS].iter().find(|t| rest.starts_with(**t)) {
            t.len()
        } else if let Some(t) = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].iter().find(|t| rest.starts_with(**t)) {
            t.len()
        } else if c.is_alphabetic() {
            rest.find(|ch: char| !ch.is_alphabetic()).unwrap_or(rest.len())
        } else if c.is_numeric() {
            c.len_utf8()
        } else if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        } else {
            rest.find(|ch: char| ch.is_whitespace() || ch.is_alphabetic() || ch.is_numeric()).unwrap_or(rest.len())
        };
        out.push(&rest[..len]);
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_clips_pattern() {
        assert_eq!(split_words("a cup of coffee!"), vec!["a", "cup", "of", "coffee", "!"]);
        assert_eq!(split_words("rocket's 42"), vec!["rocket", "'s", "4", "2"]);
        assert_eq!(split_words("x<|endoftext|>!!'s"), vec!["x", "<|endoftext|>", "!!'", "s"]);
    }
}

//! Byte-level BPE tokenizers from `tokenizer.json`: GPT-NeoX's (`state-spaces/mamba-*-hf`) and
//! Qwen2's (`Qwen/Qwen2.5-VL-*`): added tokens split out first, the pre-tokenizer pattern
//! (GPT-2's, or Qwen2's, picked from the file), bytes mapped to printable characters, BPE
//! merges; decoding maps the characters back to bytes.

use crate::error::{Error, Result};
use crate::models::bpe::{self, bytes_to_unicode};
use std::collections::HashMap;

pub struct ByteBpe {
    vocab: HashMap<String, u32>,
    inverse: Vec<String>,
    ranks: bpe::Ranks,
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
    /// Added (special) tokens, longest first so the longest match wins.
    added: Vec<(String, u32)>,
    split: fn(&str) -> Vec<&str>,
    /// The file's normalizer is NFC (Qwen2's): text is composed before it is split.
    nfc: bool,
}

/// Whether a `normalizer` is NFC (alone or in a sequence).
fn is_nfc(v: &serde_json::Value) -> bool {
    match v.get("type").and_then(|t| t.as_str()) {
        Some("NFC") => true,
        Some("Sequence") => v.get("normalizers").and_then(|n| n.as_array()).is_some_and(|a| a.iter().any(is_nfc)),
        _ => false,
    }
}

/// Whether a `pre_tokenizer` holds Qwen2's pattern (single digits, a letter run with one
/// leading non-letter), found among its strings.
fn is_qwen2_pattern(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains(r"\p{L}+|\p{N}|"),
        serde_json::Value::Array(a) => a.iter().any(is_qwen2_pattern),
        serde_json::Value::Object(o) => o.values().any(is_qwen2_pattern),
        _ => false,
    }
}

/// Token ids a tokenizer may use (Qwen2.5's vocabulary is 151 665 tokens).
pub const MAX_VOCAB: usize = 1 << 22;

/// Prompts longer than this many characters are refused (far beyond any context here).
pub const MAX_PROMPT_CHARS: usize = 1 << 20;

impl ByteBpe {
    pub fn from_tokenizer_json(json: &str) -> Result<ByteBpe> {
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Tokenizer(format!("tokenizer.json: {e}")))?;
        let (mut vocab, merges) = bpe::vocab_merges_from_tokenizer_json(&v)?;
        let mut added: Vec<(String, u32)> = v
            .get("added_tokens")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|t| Some((t.get("content")?.as_str()?.to_string(), u32::try_from(t.get("id")?.as_u64()?).ok()?))).collect())
            .unwrap_or_default();
        // An empty added token would match everywhere and split the text without end.
        added.retain(|(s, _)| !s.is_empty());
        added.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        for (s, id) in &added {
            vocab.entry(s.clone()).or_insert(*id);
        }
        let n = vocab.values().copied().max().map_or(0, |m| m as usize + 1);
        // The id → token table is dense: an id far past the number of tokens (a corrupt file)
        // would make it huge, so ids must stay below MAX_VOCAB and 2 × entries + 1024.
        if n > MAX_VOCAB || n > 2 * vocab.len() + 1024 {
            let (tok, id) = vocab.iter().max_by_key(|(_, &id)| id).map(|(s, &id)| (s.clone(), id)).unwrap_or_default();
            return Err(Error::Tokenizer(format!(
                "tokenizer.json: token {tok:?} has id {id}, but there are only {} tokens (ids must stay below {})",
                vocab.len(),
                MAX_VOCAB.min(2 * vocab.len() + 1024)
            )));
        }
        let mut inverse = vec![String::new(); n];
        for (s, &id) in &vocab {
            inverse[id as usize] = s.clone();
        }
        let byte_char = bytes_to_unicode();
        let char_byte = byte_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
        let split = if v.get("pre_tokenizer").is_some_and(is_qwen2_pattern) { split_qwen2 } else { split_gpt2 };
        let nfc = v.get("normalizer").is_some_and(is_nfc);
        Ok(ByteBpe { vocab, inverse, ranks: bpe::ranks(merges), byte_char, char_byte, added, split, nfc })
    }

    pub fn vocab_size(&self) -> usize {
        self.inverse.len()
    }

    /// The id of a token string (e.g. `<|endoftext|>`).
    pub fn token_id(&self, s: &str) -> Option<u32> {
        self.vocab.get(s).copied()
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        if text.chars().count() > MAX_PROMPT_CHARS {
            return Err(Error::arg(format!("the prompt is longer than {MAX_PROMPT_CHARS} characters")));
        }
        let composed;
        let text = if self.nfc {
            use unicode_normalization::UnicodeNormalization;
            composed = text.nfc().collect::<String>();
            composed.as_str()
        } else {
            text
        };
        let mut ids = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // The next added token, if any, splits the text.
            let next =
                self.added.iter().filter_map(|(s, id)| rest.find(s.as_str()).map(|p| (p, s.len(), *id))).min_by_key(|&(p, l, _)| (p, std::cmp::Reverse(l)));
            let (plain, special) = match next {
                Some((p, l, id)) => (&rest[..p], Some((id, p + l))),
                None => (rest, None),
            };
            for piece in (self.split)(plain) {
                let mapped: Vec<String> = piece.bytes().map(|b| self.byte_char[b as usize].to_string()).collect();
                for tok in bpe::merge(mapped, &self.ranks) {
                    ids.push(self.vocab.get(&tok).copied().ok_or_else(|| Error::Tokenizer(format!("token `{tok}` is not in the vocabulary")))?);
                }
            }
            match special {
                Some((id, end)) => {
                    ids.push(id);
                    rest = &rest[end..];
                }
                None => break,
            }
        }
        Ok(ids)
    }

    /// Text of `ids` (invalid UTF-8 from a partial multi-byte character comes out as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            self.bytes_of(id, &mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// Appends token `id`'s bytes (none for an unknown id).
    fn bytes_of(&self, id: u32, out: &mut Vec<u8>) {
        let Some(s) = self.inverse.get(id as usize) else { return };
        if self.added.iter().any(|(a, _)| a == s) {
            out.extend_from_slice(s.as_bytes());
        } else {
            out.extend(s.chars().map(|c| self.char_byte.get(&c).copied().unwrap_or(b'?')));
        }
    }
}

/// The text of a growing token sequence, piece by piece, for printing tokens as they are
/// generated: a character whose bytes are split over several tokens (byte-level BPE splits
/// most characters outside Latin script, and every emoji) is held back until its last byte
/// arrives, where decoding each token on its own would print U+FFFD for each part. The
/// pieces, then [`TextStream::finish`], joined equal [`ByteBpe::decode`] of the whole sequence.
#[derive(Debug, Default)]
pub struct TextStream {
    /// Bytes of an unfinished character (at most 3).
    pending: Vec<u8>,
}

impl TextStream {
    /// The text token `id` completes (possibly empty).
    pub fn push(&mut self, tok: &ByteBpe, id: u32) -> String {
        tok.bytes_of(id, &mut self.pending);
        let mut out = String::new();
        loop {
            let (valid, bad) = match std::str::from_utf8(&self.pending) {
                Ok(_) => (self.pending.len(), None),
                Err(e) => (e.valid_up_to(), e.error_len()),
            };
            out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
            match bad {
                // Bytes no character can continue from: one U+FFFD, as the whole sequence's
                // lossy decoding puts there; then on past them.
                Some(bad) => {
                    out.push(char::REPLACEMENT_CHARACTER);
                    self.pending.drain(..valid + bad);
                }
                // All valid (nothing left), or ending inside a character: its bytes wait for the
                // next token.
                None => {
                    self.pending.drain(..valid);
                    return out;
                }
            }
        }
    }

    /// What is left at the end: an unfinished character as U+FFFD, else nothing.
    pub fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// GPT-2's pre-tokenizer pattern, leftmost alternative first:
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
pub fn split_gpt2(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut i = 0;
    let class = |c: char| {
        if c.is_alphabetic() {
            1
        } else if c.is_numeric() {
            2
        } else if c.is_whitespace() {
            3
        } else {
            4
        }
    };
    while i < s.len() {
        let rest = &s[i..];
        let mut chars = rest.chars();
        let Some(c) = chars.next() else { break };
        let len = if let Some(t) = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].iter().find(|t| rest.starts_with(**t)) {
            t.len()
        } else {
            // An optional leading space joins the run that follows it.
            let (lead, body) = match (c, chars.next()) {
                (' ', Some(n)) if class(n) != 3 => (1, &rest[1..]),
                _ => (0, rest),
            };
            let first = body.chars().next().map_or(3, class);
            if first != 3 {
                let run = body.find(|ch: char| class(ch) != first).unwrap_or(body.len());
                lead + run
            } else {
                // Whitespace: all of it at the end of the text, else all but the last char
                // (which then leads the next word), at least one char.
                let run = rest.find(|ch: char| !ch.is_whitespace()).unwrap_or(rest.len());
                if run == rest.len() {
                    run
                } else {
                    let last = rest[..run].chars().last().map_or(1, |ch| ch.len_utf8());
                    if run > last {
                        run - last
                    } else {
                        run
                    }
                }
            }
        };
        out.push(&rest[..len]);
        i += len;
    }
    out
}

/// Qwen2's pre-tokenizer pattern, leftmost alternative first:
/// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
pub fn split_qwen2(s: &str) -> Vec<&str> {
    let letter = |c: char| c.is_alphabetic();
    let digit = |c: char| c.is_numeric();
    let other = |c: char| !c.is_whitespace() && !c.is_alphabetic() && !c.is_numeric();
    let newline = |c: char| c == '\r' || c == '\n';
    let run = |t: &str, f: &dyn Fn(char) -> bool| t.find(|c: char| !f(c)).unwrap_or(t.len());
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let rest = &s[i..];
        let mut it = rest.chars();
        let Some(c) = it.next() else { break };
        let next = it.next();
        let clen = c.len_utf8();
        let lower = rest.get(..4.min(rest.len())).unwrap_or(rest).to_lowercase();
        let len = if let Some(t) = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d"].iter().find(|t| lower.starts_with(**t) && rest.is_char_boundary(t.len())) {
            t.len()
        } else if letter(c) {
            run(rest, &letter)
        } else if !newline(c) && !digit(c) && next.is_some_and(letter) {
            clen + run(&rest[clen..], &letter)
        } else if digit(c) {
            clen
        } else if other(c) || (c == ' ' && next.is_some_and(other)) {
            let lead = if c == ' ' { 1 } else { 0 };
            let body = lead + run(&rest[lead..], &other);
            body + run(&rest[body..], &newline)
        } else {
            // Whitespace: up to the end of its last line break, else all of it at the end of
            // the text, else all but the last char (which leads the next piece), at least one.
            let ws = run(rest, &|c: char| c.is_whitespace());
            if let Some(nl) = rest[..ws].rfind(newline) {
                nl + 1
            } else if ws == rest.len() {
                ws
            } else {
                let last = rest[..ws].chars().last().map_or(1, |ch| ch.len_utf8());
                if ws > last {
                    ws - last
                } else {
                    ws
                }
            }
        };
        let len = len.max(clen);
        out.push(&rest[..len]);
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_like_gpt2() {
        assert_eq!(split_gpt2("Hello world!"), vec!["Hello", " world", "!"]);
        assert_eq!(split_gpt2("it's 2024  ok\n"), vec!["it", "'s", " 2024", " ", " ok", "\n"]);
        assert_eq!(split_gpt2("a\nb"), vec!["a", "\n", "b"]);
        assert_eq!(split_gpt2("x  "), vec!["x", "  "]);
        assert_eq!(split_gpt2(" ...hi"), vec![" ...", "hi"]);
    }

    /// Streamed pieces join to the decode of the whole sequence, and hold back a character
    /// split over tokens instead of printing U+FFFD for its parts (tiny fixtures: few merges, so
    /// every character outside ASCII is several byte tokens).
    #[test]
    fn a_text_stream_joins_to_the_decode_and_holds_split_characters() {
        for fixture in ["mamba-tiny", "qwen-tiny"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture).join("tokenizer.json");
            let tok = ByteBpe::from_tokenizer_json(&std::fs::read_to_string(path).unwrap()).unwrap();
            let text = "héllo, 世界 🎉 naïve — ok";
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids), text, "{fixture}");
            let split = ids.iter().any(|&id| tok.decode(&[id]).contains(char::REPLACEMENT_CHARACTER));
            assert!(split, "{fixture}: no character is split over tokens, so the stream is not tested");
            let mut stream = TextStream::default();
            let pieces: Vec<String> = ids.iter().map(|&id| stream.push(&tok, id)).collect();
            assert_eq!(stream.finish(), "");
            assert!(pieces.iter().all(|p| !p.contains(char::REPLACEMENT_CHARACTER)), "{fixture}: {pieces:?}");
            assert_eq!(pieces.concat(), text, "{fixture}");
            // Broken bytes (a character cut short, then another; a lone continuation byte; an
            // unfinished one at the end) come out as the whole sequence's lossy decode does.
            let id_of = |b: u8| tok.vocab[&bytes_to_unicode()[b as usize].to_string()];
            let broken: Vec<u32> = [0xE4u8, 0xB8, b'a', 0x80, 0xF0, 0x9F, 0x8E, 0x89, 0xE4].iter().map(|&b| id_of(b)).collect();
            let mut stream = TextStream::default();
            let mut joined: String = broken.iter().map(|&id| stream.push(&tok, id)).collect();
            joined.push_str(&stream.finish());
            assert_eq!(joined, tok.decode(&broken), "{fixture}");
            assert_eq!(joined, "\u{FFFD}a\u{FFFD}🎉\u{FFFD}", "{fixture}");
        }
    }

    #[test]
    fn splits_like_qwen2() {
        assert_eq!(split_qwen2("Hello world!"), vec!["Hello", " world", "!"]);
        assert_eq!(split_qwen2("it's 2024, ok"), vec!["it", "'s", " ", "2", "0", "2", "4", ",", " ok"]);
        assert_eq!(split_qwen2("a\n\nb"), vec!["a", "\n\n", "b"]);
        assert_eq!(split_qwen2("x  \ty"), vec!["x", "  ", "\ty"]);
        assert_eq!(split_qwen2("IT'S"), vec!["IT", "'S"]);
        assert_eq!(split_qwen2(".\n"), vec![".\n"]);
    }
}

//! What the language models share: next-token [`sample`] choice, the [`decode`] loop and the
//! byte-level BPE [`tokenizer`] (GPT-NeoX's for Mamba, Qwen2's for Qwen2.5-VL).

pub mod decode;
pub mod sample;
pub mod tokenizer;

pub use decode::{decode, Decoded, Step};
pub use sample::{argmax, sample, SampleOptions};
pub use tokenizer::{ByteBpe, TextStream};

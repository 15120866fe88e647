//! One error type for the whole crate. Every message names what was wrong: the file, the
//! tensor, the shapes, the limit. Nothing in the core panics on user data.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },

    #[error("image: {0}")]
    Image(String),

    #[error("weights {file}: {msg}")]
    Weights { file: String, msg: String },

    #[error("weights {file}: missing tensor `{name}`")]
    MissingTensor { file: String, name: String },

    #[error("weights {file}: tensor `{name}` has shape {got:?}, expected {expected:?}")]
    Shape { file: String, name: String, expected: Vec<usize>, got: Vec<usize> },

    #[error("weights {file}: tensor `{name}` has dtype {dtype}, expected one of F32, F16, BF16")]
    Dtype { file: String, name: String, dtype: String },

    #[error("config {file}: {msg}")]
    Config { file: String, msg: String },

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("invalid argument: {0}")]
    Arg(String),

    /// A failure inside the backend that is a bug, not the device's fault (mixed devices, an
    /// op's own invariant, candle): it surfaces and never triggers a fallback.
    #[error("backend: {0}")]
    Backend(String),

    /// The GPU itself failed or cannot do it: no adapter, device lost, out of memory, a
    /// limit, an uncaptured validation error. Raised only by the GPU context; the only error
    /// that makes a session fall back to the CPU.
    #[error("GPU: {0}")]
    Device(String),

    /// A model produced NaN or ∞ (weights or inputs beyond f32's range): an error, never a
    /// `null` in JSON.
    #[error("the model produced a non-finite value ({value}) in {what} at index {index}")]
    NonFinite { what: String, index: usize, value: f32 },

    #[error("download {url}: {msg}")]
    Download { url: String, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Backend(e.to_string())
    }
}

/// Fails with [`Error::NonFinite`] naming `what` when `v` holds NaN or ∞.
pub fn check_finite(what: &str, v: &[f32]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(Error::NonFinite { what: what.to_string(), index, value: v[index] }),
        None => Ok(()),
    }
}

impl Error {
    pub fn arg(msg: impl fmt::Display) -> Self {
        Error::Arg(msg.to_string())
    }
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { path: path.to_string(), source }
    }
}

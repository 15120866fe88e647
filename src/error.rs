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

    #[error("backend: {0}")]
    Backend(String),

    #[error("download {url}: {msg}")]
    Download { url: String, msg: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Backend(e.to_string())
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

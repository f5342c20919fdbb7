//! The one error type of the library. Every variant prints as a single line
//! that says what went wrong and where (file and byte offset, JSON path,
//! pid, fd or inode).

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// A binary image is malformed at a byte offset.
    Image {
        file: String,
        offset: u64,
        msg: String,
    },
    /// A JSON document is malformed or has a wrong value.
    Json {
        file: String,
        at: String,
        msg: String,
    },
    /// An I/O call failed on a file.
    Io { what: String, err: std::io::Error },
    /// Anything else, already phrased with its location.
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }

    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            err,
        }
    }

    /// True when the error is a write to a closed pipe, which commands
    /// treat as a normal end (`crit show x.img | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { err, .. } if err.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Image { file, offset, msg } => write!(f, "{file}: at byte {offset}: {msg}"),
            Error::Json { file, at, msg } => write!(f, "{file}: {at}: {msg}"),
            Error::Io { what, err } => write!(f, "{what}: {err}"),
            Error::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

//! The library's errors. Each layer has its own enum whose variants carry
//! what failed and where as fields (pid, fd, inode, file, byte offset) and
//! the cause as `source()`; [`Error`] wraps them. Every error prints as one
//! line that says what went wrong and where.

/// Any error of the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A binary image is malformed at a byte offset.
    #[error("{file}: at byte {offset}: {msg}")]
    Image {
        file: String,
        offset: u64,
        msg: String,
    },
    /// A JSON document is malformed or has a wrong value.
    #[error("{file}: {at}: {msg}")]
    Json {
        file: String,
        at: String,
        msg: String,
    },
    /// An I/O call failed on a file.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// `crit edit` refused or failed.
    #[error(transparent)]
    Edit(#[from] crate::edit::error::EditError),
    /// `crit dump` failed or refused.
    #[error(transparent)]
    Dump(#[from] crate::dump::error::DumpError),
    /// `crit restore` failed or refused (boxed: its variants carry
    /// addresses and paths, and errors travel by value).
    #[error(transparent)]
    Restore(Box<crate::restore::error::RestoreError>),
    /// Anything else, already phrased with its location.
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::restore::error::RestoreError> for Error {
    fn from(e: crate::restore::error::RestoreError) -> Self {
        Error::Restore(Box::new(e))
    }
}

impl Error {
    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }

    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source: err,
        }
    }

    /// True when the error is a write to a closed pipe, which commands
    /// treat as a normal end (`crit show x.img | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

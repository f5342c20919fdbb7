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
    /// An action point the caller refused or did not hear.
    #[error(transparent)]
    Action(#[from] crate::action::ActionError),
    /// `crit restore` failed or refused (boxed: its variants carry
    /// addresses and paths, and errors travel by value).
    #[error(transparent)]
    Restore(Box<crate::restore::error::RestoreError>),
    /// A page server, or a dump talking to one, failed.
    #[error(transparent)]
    PageServer(Box<crate::pageserver::error::PsError>),
    /// An error whose message reaches the images directory through a
    /// descriptor (`/proc/self/fd/N`, as a container's restore does):
    /// shown with the directory's own path instead.
    #[error("{}", .inner.to_string().replace(.through.as_str(), .dir.as_str()))]
    Through {
        inner: Box<Error>,
        through: String,
        dir: String,
    },
    /// A file of images that is not what its name says.
    #[error("{}: {why}", file.display())]
    Images {
        file: std::path::PathBuf,
        why: ImagesFault,
    },
    /// A step on a file crit reads or writes.
    #[error("{}: {what}: {source}", path.display())]
    FileOp {
        path: std::path::PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint archive that cannot be read as one.
    #[error("{}: {why}", path.display())]
    Archive {
        path: std::path::PathBuf,
        why: crate::image::archive::ArchiveFault,
    },
    #[error("unknown magic {0}")]
    UnknownMagic(String),
    #[error("{}: no free temporary name", dir.display())]
    NoTempName { dir: std::path::PathBuf },
    /// `crit x` asked for something that does not fit.
    #[error(transparent)]
    Explore(#[from] crate::explore::error::ExploreError),
    /// A command-line value of no known form; `expected` says which.
    #[error("{option}={value}: {expected}")]
    BadValue {
        option: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("swrk: fd {fd} is not open: {source}")]
    SwrkFd {
        fd: i32,
        #[source]
        source: std::io::Error,
    },
    #[error("swrk: a request of {len} bytes does not decode: {source}")]
    SwrkDecode {
        len: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error("swrk: client pid {pid} runs as uid {uid}; this service runs as uid {ours} and serves only root and uid {ours}")]
    SwrkPeer { pid: i32, uid: u32, ours: u32 },
    /// `crit check`: what this kernel or user lacks.
    #[error("missing: {}", .0.join(", "))]
    Missing(Vec<&'static str>),
}

/// What is wrong with a file of images that parses.
#[derive(Debug, thiserror::Error)]
pub enum ImagesFault {
    #[error("image has no entry")]
    NoEntry,
    #[error("{0}; it has no magic and no entries, so there is nothing to decode")]
    Raw(&'static str),
    #[error("no task core (tc) in the entry")]
    NoTaskCore,
    #[error("pid {pid} has parent {ppid}, which is not in the tree")]
    ParentMissing { pid: u32, ppid: u32 },
    #[error("no root process (none has ppid 0)")]
    NoRoot,
    #[error("{0}, not a regular file")]
    NotRegular(&'static str),
    #[error("the pages do not match the vmas of {}", .0.display())]
    PagesMismatch(std::path::PathBuf),
    #[error("vma {start:#x}-{end:#x} ends where or before it starts")]
    VmaReversed { start: u64, end: u64 },
    #[error("vmas {:#x}-{:#x} and {:#x}-{:#x} overlap", .a.0, .a.1, .b.0, .b.1)]
    VmasOverlap { a: (u64, u64), b: (u64, u64) },
    #[error("the pages at {0:#x} were left in the dumped task (dump --lazy-pages): fetch them with --page-server")]
    LeftInTask(u64),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<crate::restore::error::RestoreError> for Error {
    fn from(e: crate::restore::error::RestoreError) -> Self {
        Error::Restore(Box::new(e))
    }
}

impl Error {
    /// This error, shown with `dir` where its message has `through`
    /// (see [`Error::Through`]).
    pub fn through(self, through: &str, dir: &std::path::Path) -> Self {
        Error::Through {
            inner: Box::new(self),
            through: through.to_string(),
            dir: dir.display().to_string(),
        }
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

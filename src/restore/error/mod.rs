//! What can go wrong in `crit restore`, with the pid, fd, inode or file as
//! fields and the cause as `source()`.
//!
//! One enum per part of the restore: each prints as the one line restore
//! has always printed for it (scripts and tests match on that text).

mod files;
mod setup;
mod task;

pub use files::{FileError, FileFault, On};
pub use setup::{CoreFault, InventoryFault, PstreeFault, SetupError};
pub use task::{PagesFault, SeccompFault, TaskError, TimerFault};

/// A failed or refused restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The unix sockets cannot come back as the images and options ask.
    #[error(transparent)]
    Unix(#[from] super::unix::plan::Refusal),
    /// The tree's namespaces cannot be made again.
    #[error(transparent)]
    Ns(#[from] super::ns::NsError),
    /// A file of the tree cannot be opened again.
    #[error(transparent)]
    File(#[from] FileError),
    /// A task cannot be rebuilt: its process, threads, memory or state.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// The options, images or the restore's own machinery.
    #[error(transparent)]
    Setup(#[from] SetupError),
}

/// Lets `?` lift each part's error straight into the library's error.
macro_rules! into_error {
    ($($t:ty),*) => {$(
        impl From<$t> for crate::error::Error {
            fn from(e: $t) -> Self {
                crate::error::Error::from(RestoreError::from(e))
            }
        }
    )*};
}
into_error!(FileError, TaskError, SetupError, super::ns::NsError);

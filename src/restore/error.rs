//! What can go wrong in `crit restore`, with the pid, fd, inode or file as
//! fields and the cause as `source()`.

/// A failed or refused restore.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The unix sockets cannot come back as the images and options ask.
    #[error(transparent)]
    Unix(#[from] super::unix::plan::Refusal),
    /// The tree's namespaces cannot be made again.
    #[error(transparent)]
    Ns(#[from] super::ns::NsError),
}

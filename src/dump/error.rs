//! What can go wrong in `crit dump`, with the pid, fd, inode or file as
//! fields and the cause as `source()`.

/// A failed or refused dump.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {}

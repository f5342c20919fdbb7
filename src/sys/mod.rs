//! Small safe wrappers over kernel interfaces. All of crit's `unsafe` code
//! lives under this module, each use behind a documented safe function.

pub mod mmap;
pub mod kcmp;
pub mod task;
pub mod sockdiag;
pub mod sockopt;

//! Small safe wrappers over kernel interfaces. All of crit's `unsafe` code
//! lives under this module, each use behind a documented safe function.

pub mod clone;
pub mod cpu;
pub mod fdops;
pub mod mmap;
pub mod sock;

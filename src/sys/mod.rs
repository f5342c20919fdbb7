//! Small safe wrappers over kernel interfaces. All of crit's `unsafe` code
//! lives under this module, each use behind a documented safe function.
//!
//! The layer both engines use:
//! - [`ptrace`]: per-thread tracing, stops, registers and signal state;
//! - [`remote`]: reading and writing another process's memory;
//! - [`inject`]: running syscalls inside a stopped thread;
//! - [`pidfd`]: pidfds and copying another process's file descriptors;
//! - [`clone`]: forking with a chosen pid (or plainly, for a daemon);
//! - [`procfs`]: the few `/proc` reads they need.
//!
//! Added for the restore engine: [`fdops`] (fd-table moves, epoll, inotify,
//! memfd sizing), [`sock`] (accept, dup of inherited fds), [`cpu`] (xsave
//! layout).
//!
//! Every function returns `std::io::Error`s naming the call and pid/tid,
//! whose errno [`errno_of`] recovers; what to do about a failure (retry,
//! skip, give up the dump) is the engines' business. x86-64 only.

// Every unsafe block says why it is sound; functions stay short enough
// to read as one step (threshold in clippy.toml).
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod affinity;
pub mod clone;
pub mod cpu;
mod err;
pub mod fdops;
pub mod handle;
pub mod inject;
pub mod ipc;
pub mod mmap;
pub mod mnt;
pub mod netdev;
pub mod nofile;
pub mod ns;
pub mod pidfd;
pub mod pmscan;
pub mod procfs;
pub mod ptrace;
pub mod remote;
pub mod sig;
pub mod sock;

pub use err::{errno_of, SysError};

// Added by the dump engine.
pub mod fhandle;
pub mod fown;
pub mod kcmp;
pub mod rawtcp;
pub mod scm;
pub mod seccomp;
pub mod sigign;
pub mod sockdiag;
pub mod sockopt;
pub mod task;
pub mod tcp_repair;
pub mod thread;
pub mod tls;
pub mod tty;
pub mod uffd;

/// Top of the x86-64 user address space (47-bit; the last page below
/// 2^47 is never user memory).
pub const TASK_SIZE: u64 = 0x7fff_ffff_f000;

//! Detached mount trees (open_tree and move_mount): a bind made in one
//! place of the mount tree and attached in another, later, by another
//! process of the same mount namespace.

use super::err;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: u64 = 1;
const OPEN_TREE_CLOEXEC: u64 = libc::O_CLOEXEC as u64;
const MOVE_MOUNT_F_EMPTY_PATH: u64 = 4;

fn c_path(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))
}

/// A detached copy of the mount at `path` (a bind of it, not yet
/// attached anywhere), as an fd.
pub fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    let c = c_path(path)?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call; the
    // kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(err::last(format!("open_tree({})", path.display())));
    }
    // SAFETY: open_tree returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

/// Attaches the detached tree `tree` at `target`.
pub fn attach_tree(tree: BorrowedFd, target: &Path) -> io::Result<()> {
    let c = c_path(target)?;
    let empty = c"";
    // SAFETY: both strings are NUL-terminated and outlive the call; the
    // kernel only reads them; `tree` is an open fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r < 0 {
        return Err(err::last(format!("move_mount to {}", target.display())));
    }
    Ok(())
}

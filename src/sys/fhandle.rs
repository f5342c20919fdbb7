//! open_by_handle_at(2): opening a file from the handle the kernel shows
//! for an inotify watch, to learn its path.

use nix::libc;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Opens (O_PATH) the file with handle `handle` (`bytes` long, of type
/// `htype`) on the filesystem that `mount` is on. Needs
/// CAP_DAC_READ_SEARCH.
pub fn open_by_handle(mount: BorrowedFd, htype: i32, handle: &[u8]) -> std::io::Result<OwnedFd> {
    // struct file_handle { unsigned int handle_bytes; int handle_type;
    // unsigned char f_handle[]; }
    let mut buf = Vec::with_capacity(8 + handle.len());
    buf.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf.extend_from_slice(&htype.to_ne_bytes());
    buf.extend_from_slice(handle);
    // SAFETY: `buf` is a complete struct file_handle whose handle_bytes
    // matches the bytes that follow; the kernel only reads it. The result
    // is a new descriptor that we own.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd() as libc::c_long,
            buf.as_ptr(),
            (libc::O_PATH | libc::O_CLOEXEC) as libc::c_long,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `r` is a descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

//! Opening a file by its file handle (`open_by_handle_at`), as inotify and
//! fanotify marks are recorded.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Opens the file that `handle` (of type `handle_type`, as
/// `name_to_handle_at` gave it) names on the filesystem mounted where
/// `mount` is open, with `flags` (e.g. `O_PATH`). Needs
/// CAP_DAC_READ_SEARCH.
pub fn open_by_handle(
    mount: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> io::Result<OwnedFd> {
    if handle.len() > 128 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }
    let mut buf = vec![0u8; 8 + 128];
    buf[0..4].copy_from_slice(&(handle.len() as u32).to_ne_bytes());
    buf[4..8].copy_from_slice(&handle_type.to_ne_bytes());
    buf[8..8 + handle.len()].copy_from_slice(handle);
    // SAFETY: buf holds a complete struct file_handle with handle_bytes
    // bytes of handle; the kernel only reads it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount.as_raw_fd(),
            buf.as_mut_ptr(),
            flags | libc::O_CLOEXEC,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
}

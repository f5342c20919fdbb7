//! File-descriptor operations on raw numbers: mostly what the restore
//! engine needs while it lays out a task's fds at exact numbers (dup onto
//! a number, close ranges), and small queries on a descriptor.
//!
//! These take raw fd numbers because the restore deliberately works on the
//! numeric fd table of a freshly forked task; they cannot cause memory
//! unsafety, only close or replace descriptors the caller names.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `dup3(old, new, cloexec ? O_CLOEXEC : 0)`; `old == new` just sets the flag.
pub fn dup_to(old: RawFd, new: RawFd, cloexec: bool) -> io::Result<()> {
    if old == new {
        return set_cloexec(new, cloexec);
    }
    let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
    // SAFETY: dup3 only manipulates the fd table.
    check(unsafe { libc::dup3(old, new, fl) }).map(|_| ())
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a copy at the lowest free number >= min.
pub fn dup_at_least(fd: RawFd, min: RawFd) -> io::Result<RawFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) only manipulates the fd table.
    check(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, min) })
}

/// Sets or clears FD_CLOEXEC.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let v = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD only changes the descriptor's flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFD, v) }).map(|_| ())
}

/// Sets the file status flags (O_NONBLOCK, O_APPEND, ...).
pub fn set_status_flags(fd: RawFd, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL only changes the open file's status flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(|_| ())
}

/// Adds `flags` to the status flags of the open file behind `fd`.
pub fn add_status_flags(fd: RawFd, flags: i32) -> io::Result<()> {
    // SAFETY: F_GETFL takes no argument and only reads the flags.
    let now = check(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    set_status_flags(fd, now | flags)
}

/// Closes every fd in `first..=last`.
pub fn close_range(first: u32, last: u32) -> io::Result<()> {
    if first > last {
        return Ok(());
    }
    // SAFETY: close_range only manipulates the fd table; the caller owns
    // the whole table of this freshly forked task.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Closes one fd by number.
pub fn close(fd: RawFd) -> io::Result<()> {
    // SAFETY: see close_range.
    check(unsafe { libc::close(fd) }).map(|_| ())
}

/// `write(fd, buf)` on an fd number the caller keeps owning.
pub fn write_fd(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid readable slice of buf.len() bytes.
    let r = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// `read(fd, buf)` on an fd number the caller keeps owning.
pub fn read_fd(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable slice of buf.len() bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Reads into `buf` from `fd` only if that cannot wait: `None` when
/// nothing is there to read, else the count read (0 at end-of-file).
pub fn read_ready(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: p is one valid pollfd; a zero timeout never blocks.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if p.revents & libc::POLLNVAL != 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if n == 0 {
        return Ok(None);
    }
    read_fd(fd, buf).map(Some)
}

/// `inotify_add_watch(fd, path, mask)`: the watch descriptor number.
pub fn inotify_add_watch(fd: RawFd, path: &std::ffi::CStr, mask: u32) -> io::Result<i32> {
    // SAFETY: path is a valid NUL-terminated string for the call.
    check(unsafe { libc::inotify_add_watch(fd, path.as_ptr(), mask) })
}

/// `inotify_rm_watch(fd, wd)`.
pub fn inotify_rm_watch(fd: RawFd, wd: i32) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::inotify_rm_watch(fd, wd) }).map(|_| ())
}

/// `fanotify_init(flags, event_f_flags)`: a new fanotify group.
pub fn fanotify_init(flags: u32, event_flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: integers only; the result is checked before it is owned.
    let fd = check(unsafe { libc::fanotify_init(flags, event_flags) })?;
    // SAFETY: `fd` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `fanotify_mark(fd, flags, mask, AT_FDCWD, path)`.
pub fn fanotify_mark(fd: RawFd, flags: u32, mask: u64, path: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: path is a valid NUL-terminated string for the call.
    check(unsafe { libc::fanotify_mark(fd, flags, mask, libc::AT_FDCWD, path.as_ptr()) })
        .map(|_| ())
}

/// `epoll_ctl(epfd, EPOLL_CTL_ADD, fd, {events, data})`.
pub fn epoll_add(epfd: RawFd, fd: RawFd, events: u32, data: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: data };
    // SAFETY: ev is a live epoll_event the kernel only reads.
    check(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
}

/// `ftruncate(fd, len)`.
pub fn ftruncate(fd: RawFd, len: u64) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::ftruncate(fd, len as libc::off_t) }).map(|_| ())
}

/// `fcntl(fd, F_ADD_SEALS, seals)`.
pub fn add_seals(fd: RawFd, seals: i32) -> io::Result<()> {
    // SAFETY: integers only.
    check(unsafe { libc::fcntl(fd, libc::F_ADD_SEALS, seals) }).map(|_| ())
}

/// `fcntl(fd, F_SETOWN_EX, {kind, pid})` (kind: 0 thread, 1 process, 2
/// process group) and, if `sig` is not 0, `fcntl(fd, F_SETSIG, sig)`.
pub fn set_owner(fd: RawFd, kind: i32, pid: i32, sig: i32) -> io::Result<()> {
    const F_SETSIG: libc::c_int = 10;
    const F_SETOWN_EX: libc::c_int = 15;
    // struct f_owner_ex { int type; pid_t pid; }
    let owner: [libc::c_int; 2] = [kind, pid];
    // SAFETY: owner is a live f_owner_ex-shaped array the kernel only reads.
    check(unsafe { libc::fcntl(fd, F_SETOWN_EX, owner.as_ptr()) })?;
    if sig != 0 {
        // SAFETY: integers only.
        check(unsafe { libc::fcntl(fd, F_SETSIG, sig) })?;
    }
    Ok(())
}

/// `ioctl(fd, TFD_IOC_SET_TICKS, &ticks)`: expirations a timerfd reports
/// as already pending (needs CONFIG_CHECKPOINT_RESTORE).
pub fn timerfd_set_ticks(fd: RawFd, ticks: u64) -> io::Result<()> {
    // _IOW('T', 0, u64)
    const TFD_IOC_SET_TICKS: libc::c_ulong = (1 << 30) | (8 << 16) | ((b'T' as libc::c_ulong) << 8);
    let v = ticks;
    // SAFETY: v is a live u64 the kernel only reads.
    check(unsafe { libc::ioctl(fd, TFD_IOC_SET_TICKS, &v) }).map(|_| ())
}

/// Starts writing `len` bytes of `f` from `offset` to disk without
/// waiting (`sync_file_range(SYNC_FILE_RANGE_WRITE)`), so a later fsync
/// or syncfs finds most of it done. Only a hint: it makes nothing durable.
pub fn start_writeback(f: &impl std::os::fd::AsRawFd, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: sync_file_range reads no memory of ours; on a bad fd or
    // range it fails with an errno.
    check(unsafe {
        libc::sync_file_range(
            f.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    })
    .map(|_| ())
}

/// Bytes waiting to be read behind `fd` (FIONREAD, which sockets call
/// SIOCINQ): a pipe's or fifo's buffer, whichever end `fd` is, or a
/// socket's receive queue.
pub fn bytes_to_read(fd: std::os::fd::BorrowedFd) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into `v`, a live local.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut v) })?;
    Ok(v as u32)
}

/// The runs of data of the first `size` bytes of `f`, as (offset,
/// length), found with SEEK_DATA and SEEK_HOLE; on a file system that
/// knows no holes (EINVAL), one run of the whole file. Moves `f`'s
/// position.
pub fn data_runs(f: &std::fs::File, size: u64) -> io::Result<Vec<(u64, u64)>> {
    use nix::unistd::{lseek, Whence};
    let mut runs = Vec::new();
    let mut hole = 0u64;
    while hole < size {
        let data = match lseek(f, hole as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            // Only holes from here to the end.
            Err(nix::errno::Errno::ENXIO) => break,
            Err(nix::errno::Errno::EINVAL) if hole == 0 => {
                runs.push((0, size));
                break;
            }
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        hole = (lseek(f, data as i64, Whence::SeekHole)? as u64).min(size);
        runs.push((data, hole - data));
    }
    Ok(runs)
}

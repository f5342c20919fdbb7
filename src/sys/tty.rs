//! Terminal ioctls: a tty's settings as the kernel keeps them (TCGETS and
//! friends take the kernel's `struct termios`, 19 control characters and
//! no speeds, not glibc's), and the pty calls a restore needs (which
//! index a master got, unlocking it, the controlling terminal; the
//! foreground group is set by a call injected in the session leader).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// Control characters the kernel's termios holds (its NCCS).
pub const NCCS: usize = 19;

/// The kernel's `struct termios` (asm-generic/termbits.h), what TCGETS,
/// TCSETS and the locked-termios calls read and write.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; NCCS],
}

/// A terminal's size.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Winsize {
    pub row: u16,
    pub col: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}

fn check(rc: libc::c_int, what: &str, fd: BorrowedFd) -> io::Result<()> {
    if rc < 0 {
        return Err(super::err::last(format!("{what} on fd {}", fd.as_raw_fd())));
    }
    Ok(())
}

/// `ioctl(fd, req, &mut T)` for a request that reads or writes one `T`.
fn ioctl_ptr<T>(fd: BorrowedFd, req: libc::c_ulong, arg: *mut T, what: &str) -> io::Result<()> {
    // SAFETY: every caller passes a request whose argument is a pointer
    // to a `T` of the size the kernel expects, valid for the call.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) },
        what,
        fd,
    )
}

/// The terminal's settings (TCGETS).
pub fn termios(fd: BorrowedFd) -> io::Result<Termios> {
    let mut t = Termios::default();
    ioctl_ptr(fd, libc::TCGETS, &mut t, "TCGETS")?;
    Ok(t)
}

/// Which settings are locked (TIOCGLCKTRMIOS).
pub fn locked_termios(fd: BorrowedFd) -> io::Result<Termios> {
    let mut t = Termios::default();
    ioctl_ptr(fd, libc::TIOCGLCKTRMIOS, &mut t, "TIOCGLCKTRMIOS")?;
    Ok(t)
}

/// The terminal's size (TIOCGWINSZ).
pub fn winsize(fd: BorrowedFd) -> io::Result<Winsize> {
    let mut w = Winsize::default();
    ioctl_ptr(fd, libc::TIOCGWINSZ, &mut w, "TIOCGWINSZ")?;
    Ok(w)
}

/// Whether the terminal is in exclusive mode (TIOCGEXCL).
pub fn exclusive(fd: BorrowedFd) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    ioctl_ptr(fd, libc::TIOCGEXCL, &mut v, "TIOCGEXCL")?;
    Ok(v != 0)
}

/// An int flag the terminal reports (TIOCGPKT, TIOCGPTLCK), false where
/// the request is not for this end (ENOTTY: a slave has neither), as
/// CRIU reads them.
fn flag(fd: BorrowedFd, req: libc::c_ulong, what: &str) -> io::Result<bool> {
    let mut v: libc::c_int = 0;
    match ioctl_ptr(fd, req, &mut v, what) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(false),
        r => r.map(|_| v != 0),
    }
}

/// Whether pty master `fd` is in packet mode (TIOCGPKT).
pub fn packet_mode(fd: BorrowedFd) -> io::Result<bool> {
    flag(fd, libc::TIOCGPKT, "TIOCGPKT")
}

/// Whether the slave of pty master `fd` is locked (TIOCGPTLCK).
pub fn pty_locked(fd: BorrowedFd) -> io::Result<bool> {
    flag(fd, libc::TIOCGPTLCK, "TIOCGPTLCK")
}

/// Bytes waiting to be read on the terminal (FIONREAD): what the other
/// end of a pty wrote and nobody has read yet.
pub fn queued(fd: BorrowedFd) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    ioctl_ptr(fd, libc::FIONREAD, &mut n, "FIONREAD")?;
    Ok(n.max(0) as u32)
}

/// Turns packet mode of pty master `fd` on or off (TIOCPKT).
pub fn set_packet_mode(fd: BorrowedFd, on: bool) -> io::Result<()> {
    let mut v: libc::c_int = on.into();
    ioctl_ptr(fd, libc::TIOCPKT, &mut v, "TIOCPKT")
}

/// Puts the terminal in exclusive mode (TIOCEXCL): further opens of it
/// fail with EBUSY but for CAP_SYS_ADMIN.
pub fn set_exclusive(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: TIOCEXCL takes no argument.
    check(
        unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCEXCL as _) },
        "TIOCEXCL",
        fd,
    )
}

/// Sets the terminal's settings now (TCSETS).
pub fn set_termios(fd: BorrowedFd, t: &Termios) -> io::Result<()> {
    let mut t = *t;
    ioctl_ptr(fd, libc::TCSETS, &mut t, "TCSETS")
}

/// Locks settings (TIOCSLCKTRMIOS; needs CAP_SYS_ADMIN).
pub fn set_locked_termios(fd: BorrowedFd, t: &Termios) -> io::Result<()> {
    let mut t = *t;
    ioctl_ptr(fd, libc::TIOCSLCKTRMIOS, &mut t, "TIOCSLCKTRMIOS")
}

/// Sets the terminal's size (TIOCSWINSZ).
pub fn set_winsize(fd: BorrowedFd, w: &Winsize) -> io::Result<()> {
    let mut w = *w;
    ioctl_ptr(fd, libc::TIOCSWINSZ, &mut w, "TIOCSWINSZ")
}

/// The index of the pty whose master `fd` is (TIOCGPTN): its slave is
/// pts/N of the same devpts.
pub fn pty_index(fd: BorrowedFd) -> io::Result<u32> {
    let mut n: libc::c_uint = 0;
    ioctl_ptr(fd, libc::TIOCGPTN, &mut n, "TIOCGPTN")?;
    Ok(n)
}

/// Unlocks (or locks) the slave of master `fd` (TIOCSPTLCK).
pub fn set_pty_lock(fd: BorrowedFd, locked: bool) -> io::Result<()> {
    let mut v: libc::c_int = locked.into();
    ioctl_ptr(fd, libc::TIOCSPTLCK, &mut v, "TIOCSPTLCK")
}

/// Makes the terminal on the caller's fd number `fd` its controlling
/// terminal (TIOCSCTTY; the caller leads a session that has none). A
/// number, not a borrowed fd: a forked task names its own fds so; a
/// closed one is EBADF.
pub fn set_controlling(fd: RawFd) -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value (1: steal from another
    // session if root), no pointer; any fd number is safe to pass.
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY as _, 1 as libc::c_int) } < 0 {
        return Err(super::err::last(format!("TIOCSCTTY on fd {fd}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_termios_is_36_bytes() {
        assert_eq!(std::mem::size_of::<Termios>(), 36);
        assert_eq!(std::mem::size_of::<Winsize>(), 8);
    }
}

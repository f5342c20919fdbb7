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

/// Reads the bytes queued on terminal `fd` for its reader, up to `cap`,
/// without waiting, one `Vec` per read: O_NONBLOCK is set on the open
/// file for the while (a canonical reader with VMIN or a partial line
/// would block) and its flags put back after. In canonical mode only
/// whole lines come out; a partial line stays queued. A master in packet
/// mode starts each read with a status byte, left in. The line
/// discipline holds 4 KiB; once one read found bytes, more that the
/// kernel moves in meanwhile are waited for a moment.
pub fn read_queued(fd: BorrowedFd, cap: usize) -> io::Result<Vec<Vec<u8>>> {
    with_nonblock(fd, || {
        let mut reads: Vec<Vec<u8>> = Vec::new();
        let mut total = 0;
        let mut buf = vec![0u8; 4096];
        while total < cap {
            let want = (cap - total).min(buf.len());
            match nix::unistd::read(fd, &mut buf[..want]) {
                Ok(n @ 1..) => {
                    reads.push(buf[..n].to_vec());
                    total += n;
                }
                // Nothing now (0: a reader with VMIN 0).
                Ok(0) | Err(nix::errno::Errno::EAGAIN) => {
                    let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
                    if reads.is_empty() || nix::poll::poll(&mut p, 2u16).unwrap_or(0) == 0 {
                        break;
                    }
                }
                // A hung-up end has nothing more to give.
                Err(nix::errno::Errno::EIO) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(errno(fd, "read", e)),
            }
        }
        Ok(reads)
    })
}

/// An errno of a call on `fd`, as an I/O error naming both.
fn errno(fd: BorrowedFd, what: &str, e: nix::errno::Errno) -> io::Error {
    io::Error::new(
        io::Error::from(e).kind(),
        format!("{what} on fd {}: {e}", fd.as_raw_fd()),
    )
}

/// Runs `f` with O_NONBLOCK set on `fd`'s open file (shared with whoever
/// else holds it: the frozen task), then puts its flags back.
fn with_nonblock<T>(fd: BorrowedFd, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags =
        OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).map_err(|e| errno(fd, "F_GETFL", e))?);
    if flags.contains(OFlag::O_NONBLOCK) {
        return f();
    }
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(|e| errno(fd, "F_SETFL", e))?;
    let r = f();
    let back = fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(|e| errno(fd, "F_SETFL", e));
    let r = r?;
    back.map(|_| r)
}

/// How long a requeue waits for room in a pty once it is full: room
/// comes only from the kernel moving bytes along (the tree is frozen),
/// which it does at once if at all; the tree waits meanwhile.
const ROOM_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// Queues `data` for the reader of pty master `master` again by writing
/// it into its slave `slave`, with output processing (OPOST) off for the
/// while: the bytes were read from the master already processed, and
/// would otherwise be processed twice ("\r\n" into "\r\r\n"). Never
/// blocks: returns how many bytes fitted.
pub fn requeue_output(slave: BorrowedFd, data: &[u8]) -> io::Result<usize> {
    with_settings(
        slave,
        |t| t.oflag &= !libc::OPOST,
        || write_nonblock(slave, data, ROOM_WAIT),
    )
}

/// Queues `data` for the reader of pty slave `slave` again by writing it
/// into its master `master`, with the input processing of the slave off
/// for the while (the bytes were processed when first typed: echoed,
/// mapped, signals and flow control taken): echo, signals, extended
/// characters and the input mappings; canonical mode is left as it is.
/// Input is processed later by a kernel worker, so the settings come back
/// only once the slave has the bytes (or after a short wait). Never
/// blocks: returns how many bytes fitted.
pub fn requeue_input(master: BorrowedFd, slave: BorrowedFd, data: &[u8]) -> io::Result<usize> {
    let quiet = |t: &mut Termios| {
        t.lflag &= !(libc::ECHO | libc::ECHONL | libc::ISIG | libc::IEXTEN);
        t.iflag &= !(libc::IXON
            | libc::IXOFF
            | libc::ICRNL
            | libc::INLCR
            | libc::IGNCR
            | libc::ISTRIP
            | libc::IUCLC
            | libc::PARMRK);
    };
    with_settings(slave, quiet, || {
        let before = queued(slave)? as usize;
        let n = write_nonblock(master, data, ROOM_WAIT)?;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(200);
        while (queued(slave)? as usize) < before + n && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        Ok(n)
    })
}

/// Runs `f` with `slave`'s settings changed by `change`, then puts them
/// back, whatever `f` did. Locked settings (TIOCSLCKTRMIOS) are unlocked
/// for the while; settings that still do not take are an error, before
/// anything is written.
fn with_settings<T>(
    slave: BorrowedFd,
    change: impl FnOnce(&mut Termios),
    f: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    let was = termios(slave)?;
    let mut during = was;
    change(&mut during);
    if during == was {
        return f();
    }
    let locked = locked_termios(slave)?;
    let unlock = locked != Termios::default();
    if unlock {
        set_locked_termios(slave, &Termios::default())?;
    }
    let r = set_termios(slave, &during).and_then(|()| {
        if termios(slave)? != during {
            return Err(io::Error::other(format!(
                "settings of fd {} cannot be changed for the while",
                slave.as_raw_fd()
            )));
        }
        f()
    });
    let back = set_termios(slave, &was);
    let relock = match unlock {
        true => set_locked_termios(slave, &locked),
        false => Ok(()),
    };
    let r = r?;
    back.and(relock).map(|()| r)
}

/// Writes as much of `data` to `fd` as fits within `wait`, with
/// O_NONBLOCK on the open file for the while (its flags put back after):
/// how many bytes were written.
fn write_nonblock(fd: BorrowedFd, data: &[u8], wait: std::time::Duration) -> io::Result<usize> {
    with_nonblock(fd, || {
        let until = std::time::Instant::now() + wait;
        let mut done = 0;
        // A pty takes a big write only in what whole buffers it has left:
        // smaller pieces fill the rest (the bytes came in as someone
        // else's writes, in pieces of their own).
        let mut piece = 4096;
        while done < data.len() {
            let end = data.len().min(done + piece);
            match nix::unistd::write(fd, &data[done..end]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) if piece > 1 => piece /= 2,
                Err(nix::errno::Errno::EAGAIN) => {
                    let left = until.saturating_duration_since(std::time::Instant::now());
                    let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                    let mut p = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLOUT)];
                    if ms == 0 || nix::poll::poll(&mut p, ms).unwrap_or(0) == 0 {
                        break;
                    }
                    piece = 4096;
                }
                Err(e) => return Err(errno(fd, "write", e)),
            }
        }
        Ok(done)
    })
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

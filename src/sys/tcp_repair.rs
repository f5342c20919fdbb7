//! TCP repair mode (TCP_REPAIR and friends, Linux 3.11+): read a
//! connection's sequence numbers, queues, options and window while it is
//! frozen, and build one back without a handshake. Needs CAP_NET_ADMIN.

use nix::libc;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `TCP_REPAIR_QUEUE` values.
pub const NO_QUEUE: i32 = 0;
pub const RECV_QUEUE: i32 = 1;
pub const SEND_QUEUE: i32 = 2;

/// tcpi_options bits (TCPI_OPT_*).
pub const OPT_TIMESTAMPS: u32 = 1;
pub const OPT_SACK: u32 = 2;
pub const OPT_WSCALE: u32 = 4;

/// TCP option kinds for TCP_REPAIR_OPTIONS.
const TCPOPT_MAXSEG: u32 = 2;
const TCPOPT_WINDOW: u32 = 3;
const TCPOPT_SACK_PERM: u32 = 4;
const TCPOPT_TIMESTAMP: u32 = 8;

const SIOCOUTQ: libc::c_ulong = 0x5411; // TIOCOUTQ
const SIOCOUTQNSD: libc::c_ulong = 0x894B;

fn check(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set<T>(fd: BorrowedFd, name: i32, v: &T) -> io::Result<()> {
    // SAFETY: the kernel reads size_of::<T>() bytes from `v`, a live value.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            v as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    })
}

fn get<T: Default>(fd: BorrowedFd, name: i32) -> io::Result<(T, usize)> {
    let mut v = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `v`.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            name,
            &mut v as *mut T as *mut libc::c_void,
            &mut len,
        )
    })?;
    Ok((v, len as usize))
}

/// Turns repair mode on or off.
pub fn set_repair(fd: BorrowedFd, on: bool) -> io::Result<()> {
    set(fd, libc::TCP_REPAIR, &libc::c_int::from(on))
}

/// Selects the queue TCP_QUEUE_SEQ and send/recv work on.
pub fn select_queue(fd: BorrowedFd, queue: i32) -> io::Result<()> {
    set(fd, libc::TCP_REPAIR_QUEUE, &queue)
}

pub fn queue_seq(fd: BorrowedFd) -> io::Result<u32> {
    Ok(get::<u32>(fd, libc::TCP_QUEUE_SEQ)?.0)
}

pub fn set_queue_seq(fd: BorrowedFd, seq: u32) -> io::Result<()> {
    set(fd, libc::TCP_QUEUE_SEQ, &seq)
}

fn ioctl_int(fd: BorrowedFd, req: libc::c_ulong) -> io::Result<u32> {
    let mut v: libc::c_int = 0;
    // SAFETY: these requests write one int.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut v) })?;
    Ok(v as u32)
}

/// Bytes in the receive queue not read yet (SIOCINQ).
pub fn inq_len(fd: BorrowedFd) -> io::Result<u32> {
    super::fdops::bytes_to_read(fd)
}

/// Bytes in the send queue, sent and not (SIOCOUTQ).
pub fn outq_len(fd: BorrowedFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQ)
}

/// Bytes in the send queue never sent (SIOCOUTQNSD).
pub fn unsent_len(fd: BorrowedFd) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQNSD)
}

/// The head of struct tcp_info: state, options and window scales.
#[derive(Debug, Clone, Copy, Default)]
pub struct Info {
    pub state: u8,
    pub options: u8,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
}

pub fn info(fd: BorrowedFd) -> io::Result<Info> {
    // The first eight bytes of struct tcp_info; the kernel copies no
    // more than asked for.
    let (b, len) = get::<[u8; 8]>(fd, libc::TCP_INFO)?;
    if len < 7 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(Info {
        state: b[0],
        options: b[5],
        snd_wscale: b[6] & 0xf,
        rcv_wscale: b[6] >> 4,
    })
}

pub fn maxseg(fd: BorrowedFd) -> io::Result<u32> {
    Ok(get::<u32>(fd, libc::TCP_MAXSEG)?.0)
}

pub fn timestamp(fd: BorrowedFd) -> io::Result<u32> {
    Ok(get::<u32>(fd, libc::TCP_TIMESTAMP)?.0)
}

pub fn set_timestamp(fd: BorrowedFd, ts: u32) -> io::Result<()> {
    set(fd, libc::TCP_TIMESTAMP, &ts)
}

/// struct tcp_repair_window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Window {
    pub snd_wl1: u32,
    pub snd_wnd: u32,
    pub max_window: u32,
    pub rcv_wnd: u32,
    pub rcv_wup: u32,
}

pub fn window(fd: BorrowedFd) -> io::Result<Window> {
    Ok(get::<Window>(fd, libc::TCP_REPAIR_WINDOW)?.0)
}

pub fn set_window(fd: BorrowedFd, w: &Window) -> io::Result<()> {
    set(fd, libc::TCP_REPAIR_WINDOW, w)
}

/// The options a repaired connection was negotiated with.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// TCPI_OPT_* bits.
    pub mask: u32,
    pub snd_wscale: u32,
    pub rcv_wscale: u32,
    pub mss: u32,
}

/// TCP_REPAIR_OPTIONS: SACK, window scales, timestamps and MSS.
pub fn set_options(fd: BorrowedFd, o: &Options) -> io::Result<()> {
    // struct tcp_repair_opt { u32 opt_code; u32 opt_val; }
    let mut opts: Vec<[u32; 2]> = Vec::with_capacity(4);
    if o.mask & OPT_SACK != 0 {
        opts.push([TCPOPT_SACK_PERM, 0]);
    }
    if o.mask & OPT_WSCALE != 0 {
        opts.push([TCPOPT_WINDOW, o.snd_wscale + (o.rcv_wscale << 16)]);
    }
    if o.mask & OPT_TIMESTAMPS != 0 {
        opts.push([TCPOPT_TIMESTAMP, 0]);
    }
    opts.push([TCPOPT_MAXSEG, o.mss]);
    // SAFETY: `opts` is a live array of 8-byte tcp_repair_opt records.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_REPAIR_OPTIONS,
            opts.as_ptr() as *const libc::c_void,
            (opts.len() * 8) as libc::socklen_t,
        )
    })
}

/// Copies `len` bytes of the selected queue without taking them, and
/// checks there are exactly that many.
pub fn peek_queue(fd: BorrowedFd, len: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len as usize + 1];
    // SAFETY: recv writes at most buf.len() bytes into buf.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != len as usize {
        return Err(io::Error::other(format!(
            "the queue holds {n} bytes, not the {len} its length said"
        )));
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// Sends all of `data` (into the selected queue in repair mode), halving
/// the chunk when the kernel cannot allocate one that large.
pub fn send_all(fd: BorrowedFd, data: &[u8]) -> io::Result<()> {
    let mut off = 0;
    let mut chunk = data.len().max(1);
    while off < data.len() {
        let n = chunk.min(data.len() - off);
        // SAFETY: send reads n bytes from data[off..].
        let r = unsafe {
            libc::send(
                fd.as_raw_fd(),
                data[off..].as_ptr() as *const libc::c_void,
                n,
                libc::MSG_NOSIGNAL,
            )
        };
        if r <= 0 {
            let e = io::Error::last_os_error();
            if chunk > 1024 && (r == 0 || e.raw_os_error() == Some(libc::ENOMEM)) {
                chunk /= 2;
                continue;
            }
            return Err(if r == 0 {
                io::ErrorKind::WriteZero.into()
            } else {
                e
            });
        }
        off += r as usize;
    }
    Ok(())
}

//! Established TCP connections at restore, as CRIU 4.2 repairs them
//! (its soccr library is the authority on the order): a socket in repair
//! mode is bound to the dumped address, given the sequence numbers of its
//! queues, connected without a handshake, given its options (MSS, window
//! scales, SACK, timestamps) and timestamp, then its receive queue and the
//! sent part of its send queue are put back in repair mode; the unsent
//! part is sent normally; the repair window is set. Repair mode is left
//! once every connection of the tree is built ([`finish`]).
//!
//! A half-closed connection (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
//! CLOSING) is built as established with its sequence numbers stepped
//! back over the FINs, then its FINs are replayed in their order
//! ([`crate::model::tcp`]): ours by `shutdown(SHUT_WR)` (in repair mode on
//! the send queue when the peer had acknowledged it, so that it counts as
//! sent and is never transmitted), the peer's, and its acknowledgement of
//! ours, as segments forged from the peer's address and marked to pass
//! the lock ([`crate::sys::rawtcp`]). The restore then checks the socket
//! reached the dumped state. A connecting one (SYN_SENT) is connected
//! for real out of repair mode, with its first sequence number: its SYN
//! goes out again once the lock is lifted.
//!
//! The connection's packets are still dropped by the lock its dump put in
//! place (crit's or CRIU's); [`unlock_all`] lifts it once the tree is
//! rebuilt, right before it runs.
//! With `--tcp-close`, and for a connection dumped with `--tcp-close` (no
//! stream image), a connection comes back as a closed socket instead, and
//! is unlocked too.

use super::error::{FileError, On};
use crate::error::Result;
use crate::image::entry::{EntryReader, Payload};
use crate::image::pb;
use crate::image::typed::Mapped;
use crate::model::netlock::{Conn, Lock};
use crate::model::tcp;
use crate::sys::sockopt;
use crate::sys::tcp_repair as tr;
use nix::sys::socket::{self as so, SockFlag, SockType, SockaddrIn, SockaddrIn6};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

pub const TCP_ESTABLISHED: u32 = tcp::ESTABLISHED;

/// True for an entry of a TCP connection (established, half-closed, or
/// in a state the restore refuses).
pub fn is_connection(s: &pb::InetSkEntry) -> bool {
    s.proto == libc::IPPROTO_TCP as u32 && s.state != tcp::LISTEN && s.state != tcp::CLOSE
}

fn call(ino: u32, what: &'static str) -> impl Fn(std::io::Error) -> crate::error::Error {
    move |source| {
        FileError::Io {
            on: On::Inet(ino),
            what,
            source,
        }
        .into()
    }
}

/// The connection's stream image: the entry and its two queues.
fn stream(dir: &Path, ino: u32) -> Result<(pb::TcpStreamEntry, Vec<u8>, Vec<u8>)> {
    let path = dir.join(format!("tcp-stream-{ino:x}.img"));
    let file = Mapped::open(&path)?;
    let mut src = file.source();
    let mut rd = EntryReader::expect(&mut src, "TCP_STREAM")?;
    let Some(e) = rd.next_entry()? else {
        return Err(crate::error::Error::Images {
            file: path,
            why: crate::error::ImagesFault::NoEntry,
        });
    };
    let t: pb::TcpStreamEntry = e.decode()?;
    let (inq, outq) = match e.payload {
        Payload::Tcp { inq, outq } => (inq.to_vec(), outq.to_vec()),
        _ => (Vec::new(), Vec::new()),
    };
    Ok((t, inq, outq))
}

fn sockaddr(a: IpAddr, port: u32) -> SocketAddr {
    SocketAddr::new(a, port as u16)
}

fn bind_to(fd: &OwnedFd, a: SocketAddr) -> nix::Result<()> {
    match a {
        SocketAddr::V4(v4) => so::bind(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => so::bind(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    }
}

fn connect_to(fd: &OwnedFd, a: SocketAddr) -> nix::Result<()> {
    let r = match a {
        SocketAddr::V4(v4) => so::connect(fd.as_raw_fd(), &SockaddrIn::from(v4)),
        SocketAddr::V6(v6) => so::connect(fd.as_raw_fd(), &SockaddrIn6::from(v6)),
    };
    match r {
        Err(nix::errno::Errno::EINPROGRESS) => Ok(()),
        r => r,
    }
}

/// The socket of an established connection, repaired from its images and
/// still in repair mode (`true`; [`finish`] takes it out once every
/// connection is built), or closed (`false`: with `tcp_close`, or dumped
/// with --tcp-close).
pub fn restore(
    s: &pb::InetSkEntry,
    fam: so::AddressFamily,
    dir: &Path,
    tcp_close: bool,
) -> Result<(OwnedFd, bool)> {
    let ino = s.ino;
    let nix_err = |what: &'static str| {
        move |source| -> crate::error::Error {
            FileError::Nix {
                on: On::Inet(ino),
                what,
                source,
            }
            .into()
        }
    };
    let fd = so::socket(fam, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
        .map_err(nix_err("socket"))?;
    super::inet::ip_opts(&fd, s)?;
    // A dump with --tcp-close recorded no state: closed, as asked then.
    if tcp_close || !dir.join(format!("tcp-stream-{ino:x}.img")).exists() {
        return Ok((fd, false));
    }
    if !tcp::is_repairable(s.state) {
        return Err(FileError::TcpState {
            ino,
            state: s.state,
        }
        .into());
    }
    let conn = Conn::of_entry(s).ok_or(FileError::TcpState {
        ino,
        state: s.state,
    })?;
    let (t, inq, outq) = stream(dir, ino)?;
    let fins = tcp::Fins::of(s.state);
    // Where the queues' bytes end, FINs left out.
    let inq_seq = t.inq_seq.wrapping_sub(u32::from(fins.theirs));
    let outq_seq = t.outq_seq.wrapping_sub(u32::from(fins.ours()));
    let f = fd.as_fd();
    // Room for the whole queues, and no blocking while they go back in
    // (the dumped sizes, lock bits and flags are set after).
    let huge = i32::MAX / 2;
    sockopt::set_int(f, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, huge)
        .map_err(call(ino, "SO_SNDBUFFORCE"))?;
    sockopt::set_int(f, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, huge)
        .map_err(call(ino, "SO_RCVBUFFORCE"))?;
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), libc::O_NONBLOCK)
        .map_err(call(ino, "O_NONBLOCK"))?;
    tr::set_repair(f, true).map_err(call(ino, "TCP_REPAIR on"))?;
    bind_to(&fd, sockaddr(conn.src, s.src_port)).map_err(nix_err("bind"))?;
    tr::select_queue(f, tr::RECV_QUEUE).map_err(call(ino, "TCP_REPAIR_QUEUE"))?;
    tr::set_queue_seq(f, inq_seq.wrapping_sub(t.inq_len)).map_err(call(ino, "TCP_QUEUE_SEQ"))?;
    tr::select_queue(f, tr::SEND_QUEUE).map_err(call(ino, "TCP_REPAIR_QUEUE"))?;
    // A connecting socket's send sequence starts at its SYN, which the
    // dump counted; connect then sends that SYN again for real (the lock
    // drops it until the tree runs, and the kernel sends it again), and
    // negotiates the options anew.
    let syn_sent = s.state == tcp::SYN_SENT;
    let isn = outq_seq
        .wrapping_sub(t.outq_len)
        .wrapping_sub(u32::from(syn_sent));
    tr::set_queue_seq(f, isn).map_err(call(ino, "TCP_QUEUE_SEQ"))?;
    if syn_sent {
        tr::set_repair(f, false).map_err(call(ino, "TCP_REPAIR off"))?;
    }
    connect_to(&fd, sockaddr(conn.dst, s.dst_port)).map_err(nix_err("connect"))?;
    if syn_sent {
        tr::set_repair(f, true).map_err(call(ino, "TCP_REPAIR on"))?;
    } else {
        let opts = tr::Options {
            mask: t.opt_mask,
            snd_wscale: t.snd_wscale,
            rcv_wscale: t.rcv_wscale.unwrap_or(0),
            mss: t.mss_clamp,
        };
        tr::set_options(f, &opts).map_err(call(ino, "TCP_REPAIR_OPTIONS"))?;
    }
    if t.opt_mask & tr::OPT_TIMESTAMPS != 0 {
        tr::set_timestamp(f, t.timestamp.unwrap_or(0)).map_err(call(ino, "TCP_TIMESTAMP"))?;
    }
    if !inq.is_empty() {
        tr::select_queue(f, tr::RECV_QUEUE).map_err(call(ino, "TCP_REPAIR_QUEUE"))?;
        tr::send_all(f, &inq).map_err(call(ino, "receive queue"))?;
    }
    // Sent but not acknowledged: back in repair mode, so that the stack
    // knows it went out; never sent: sent as usual, out of repair mode
    // for the time it takes, and before the window is set (the order of
    // CRIU's soccr: sent after the window, the data crawls).
    let unsent = (t.unsq_len.unwrap_or(0) as usize).min(outq.len());
    let (sent, rest) = outq.split_at(outq.len() - unsent);
    if !sent.is_empty() {
        tr::select_queue(f, tr::SEND_QUEUE).map_err(call(ino, "TCP_REPAIR_QUEUE"))?;
        tr::send_all(f, sent).map_err(call(ino, "send queue"))?;
    }
    if !rest.is_empty() {
        tr::set_repair(f, false).map_err(call(ino, "TCP_REPAIR off"))?;
        tr::send_all(f, rest).map_err(call(ino, "unsent data"))?;
        tr::set_repair(f, true).map_err(call(ino, "TCP_REPAIR on"))?;
    }
    if let (Some(snd_wl1), Some(snd_wnd), Some(max_window), Some(rcv_wnd), Some(rcv_wup)) =
        (t.snd_wl1, t.snd_wnd, t.max_window, t.rcv_wnd, t.rcv_wup)
    {
        let mut w = tr::Window {
            snd_wl1,
            snd_wnd,
            max_window,
            rcv_wnd,
            rcv_wup,
        };
        // The window was read past the peer's FIN, which is not in yet.
        if fins.theirs {
            w.rcv_wup = w.rcv_wup.wrapping_sub(1);
            w.rcv_wnd = w.rcv_wnd.wrapping_add(1);
        }
        tr::set_window(f, &w).map_err(call(ino, "TCP_REPAIR_WINDOW"))?;
    }
    if fins != tcp::Fins::default() {
        let ends = Ends {
            local: sockaddr(conn.src, s.src_port),
            peer: sockaddr(conn.dst, s.dst_port),
            inq_seq,
            // What the peer had acknowledged: up to our FIN.
            acked: outq_seq.wrapping_sub(t.outq_len),
            window: peer_window(&t),
        };
        replay_fins(&fd, fins, &ends).map_err(call(ino, "replaying the FINs"))?;
        let now = reached(f, s.state).map_err(call(ino, "TCP_INFO"))?;
        if now != s.state {
            return Err(FileError::TcpRebuilt {
                ino,
                want: s.state,
                got: now,
            }
            .into());
        }
    }
    // Old images keep these in the stream entry.
    if t.nodelay == Some(true) {
        let _ = sockopt::set_int(f, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
    }
    if t.cork == Some(true) {
        let _ = sockopt::set_int(f, libc::IPPROTO_TCP, libc::TCP_CORK, 1);
    }
    Ok((fd, true))
}

/// What the peer's forged segments say.
struct Ends {
    local: SocketAddr,
    peer: SocketAddr,
    /// Where the peer's FIN is.
    inq_seq: u32,
    /// The first byte the peer had not acknowledged.
    acked: u32,
    window: u16,
}

/// The window the peer last advertised, as its segments carry it: a
/// forged segment updates ours, so it says what the peer said.
fn peer_window(t: &pb::TcpStreamEntry) -> u16 {
    let scale = if t.opt_mask & tr::OPT_WSCALE != 0 {
        t.snd_wscale.min(14)
    } else {
        0
    };
    (t.snd_wnd.unwrap_or(0xffff) >> scale).min(0xffff) as u16
}

/// Our FIN, as `shutdown(SHUT_WR)` makes it: on the repair send queue
/// when the peer acknowledged it (it counts as sent and goes nowhere),
/// on no queue otherwise (it goes out behind what was never sent, and
/// the lock drops it until the tree runs).
fn fin_ours(fd: &OwnedFd, acked: bool) -> std::io::Result<()> {
    let f = fd.as_fd();
    tr::select_queue(f, if acked { tr::SEND_QUEUE } else { tr::NO_QUEUE })?;
    so::shutdown(fd.as_raw_fd(), so::Shutdown::Write)?;
    tr::select_queue(f, tr::NO_QUEUE)
}

/// Replays a half-closed connection's FINs in the order they came
/// (see [`crate::model::tcp`]).
fn replay_fins(fd: &OwnedFd, fins: tcp::Fins, e: &Ends) -> std::io::Result<()> {
    use crate::sys::rawtcp::{self, Segment};
    let from_peer = |seq: u32, ack: u32, flags: u8| {
        rawtcp::send(&Segment {
            from: e.peer,
            to: e.local,
            seq,
            ack,
            flags,
            window: e.window,
        })
    };
    if fins.ours_first {
        fin_ours(fd, fins.ours_acked)?;
    }
    if fins.theirs {
        from_peer(e.inq_seq, e.acked, rawtcp::FIN | rawtcp::ACK)?;
    }
    if fins.ours_second {
        fin_ours(fd, false)?;
    }
    if fins.ours_acked {
        // The peer's ACK of our FIN (one past the last byte).
        let after_fin = e.acked.wrapping_add(1);
        from_peer(e.inq_seq, after_fin, rawtcp::ACK)?;
    }
    Ok(())
}

/// The socket's state once it is `want`, or whatever it is after a
/// second: a forged segment goes through the loopback's queue.
fn reached(f: std::os::fd::BorrowedFd, want: u32) -> std::io::Result<u32> {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        let now = u32::from(tr::info(f)?.state);
        if now == want || std::time::Instant::now() > end {
            return Ok(now);
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
}

/// Takes a repaired connection out of repair mode, right before the
/// tree runs (both ends of every connection of the tree exist then):
/// leaving repair mode sends a window probe, which must find its peer (a missing one would answer with a
/// reset where no lock drops it, as in a network namespace of the
/// tree's own). Then the buffer sizes as dumped (getsockopt reports
/// twice what is set), and whether the task fixed them or left them to
/// autotuning.
pub fn finish(fd: &OwnedFd, s: &pb::InetSkEntry) -> Result<()> {
    let f = fd.as_fd();
    tr::set_repair(f, false).map_err(call(s.ino, "TCP_REPAIR off"))?;
    let _ = sockopt::set_int(
        f,
        libc::SOL_SOCKET,
        libc::SO_SNDBUFFORCE,
        (s.opts.so_sndbuf / 2) as i32,
    );
    let _ = sockopt::set_int(
        f,
        libc::SOL_SOCKET,
        libc::SO_RCVBUFFORCE,
        (s.opts.so_rcvbuf / 2) as i32,
    );
    const SO_BUF_LOCK: i32 = 72;
    let _ = sockopt::set_int(
        f,
        libc::SOL_SOCKET,
        SO_BUF_LOCK,
        s.opts.so_buf_lock.unwrap_or(0) as i32,
    );
    Ok(())
}

/// The restored connections (crit's copies): they leave repair mode only
/// right before the tree runs, and should the restore fail even after
/// that, each goes back into repair mode before crit lets go of it
/// ([`Drop`]), so that its close sends neither FIN nor reset. The
/// connection stays as the dump left it (locked, its peer waiting) and
/// the restore can be run again; a FIN would leave an orphan holding
/// the address and end the connection once the lock is lifted. (crit
/// killed before the tree runs: its janitor holds copies too, and puts
/// them back into repair mode and locks them again, see
/// [`super::janitor::note_connections`].)
#[derive(Default)]
pub struct SilentOnFailure(Vec<OwnedFd>);

impl SilentOnFailure {
    /// Keeps a copy of connection `fd`.
    pub fn keep(&mut self, fd: &OwnedFd) {
        if let Ok(c) = fd.try_clone() {
            self.0.push(c);
        }
    }

    /// Adds `other`'s connections to these.
    pub fn take_from(&mut self, other: &mut SilentOnFailure) {
        self.0.append(&mut other.0);
    }

    /// The restore succeeded: the connections are the tree's alone.
    pub fn disarm(&mut self) {
        self.0.clear();
    }
}

impl Drop for SilentOnFailure {
    fn drop(&mut self) {
        for fd in self.0.drain(..) {
            let _ = tr::set_repair(fd.as_fd(), true);
        }
    }
}

/// Lifts the lock of every TCP connection of the images (the dump's, or
/// CRIU's: the same rules, or table, as the images name). Returns what
/// could not be done, for the log.
pub fn unlock_all(lock: &Lock, conns: &[Conn]) -> Vec<String> {
    lock.unlock(conns)
}

/// Lifts the lock of the network namespace of task `pid`.
pub fn unlock_ns(lock: &Lock, pid: u32) -> std::io::Result<()> {
    let net = crate::sys::ns::open(pid as i32, "net")?;
    crate::sys::ns::run_in(&[(net.as_fd(), libc::CLONE_NEWNET as u64)], || {
        lock.unlock_ns()
    })?
}

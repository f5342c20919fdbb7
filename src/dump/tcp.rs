//! Established TCP connections at dump, as CRIU 4.2 does them: each is
//! locked (the iptables rules of [`crate::model::netlock`]: per connection
//! when the tree shares crit's network namespace, the tree's whole
//! namespace otherwise), its socket put in repair mode through
//! crit's copy of it, and its state read: sequence numbers, the receive
//! queue and the send queue (sent and unsent), MSS, window scales,
//! timestamps, SACK, the repair window. Queues are peeked, never taken.
//!
//! The sockets stay in repair mode until the dump ends. Then:
//! * a dump that kills the tree closes them in repair mode, which ends
//!   the connection without a packet; the lock stays until a restore
//!   repairs the connection and unlocks it (`crit restore`, or CRIU's);
//! * with `--leave-running`, and after a failed dump, repair mode is
//!   turned off, SO_REUSEADDR put back (leaving repair mode changes it)
//!   and the lock removed: the connection goes on as if nothing happened.
//!
//! Established and half-closed connections (FIN_WAIT1, FIN_WAIT2,
//! CLOSE_WAIT, LAST_ACK, CLOSING) are dumped; a FIN is left out of the
//! send queue's lengths as CRIU leaves it ([`crate::model::tcp`]). The
//! state recorded is the one read in repair mode, under the lock: a FIN
//! that came while the tree froze is in the queues' sequence numbers, so
//! the state must say so. A connecting socket (SYN_SENT) is dumped too:
//! its queues are empty, its send sequence counts its SYN.

use super::error::DumpError;
use crate::error::Result;
use crate::image::pb;
use crate::model::netlock::{Conn, Lock, Method};
use crate::model::tcp;
use crate::sys::sockopt;
use crate::sys::tcp_repair as tr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;

/// What tcp-stream-INO.img holds: the entry, then the receive queue,
/// then the send queue.
pub struct Stream {
    pub ino: u32,
    /// The connection's state (for `inet_sk_entry.state`).
    pub state: u32,
    pub entry: pb::TcpStreamEntry,
    pub inq: Vec<u8>,
    pub outq: Vec<u8>,
}

/// A socket in repair mode, and its lock.
struct Held {
    sock: OwnedFd,
    conn: Conn,
    locked: bool,
    reuseaddr: i32,
}

/// The connections a dump has in repair mode. Dropped without
/// [`TcpRepair::close_silently`], it lets every one go on.
pub struct TcpRepair {
    lock: Lock,
    /// Whether the lock holds a connection yet (nftables has made its
    /// table); held while one is locked.
    locked_any: Mutex<bool>,
    held: Mutex<Vec<Held>>,
    /// The tree's network namespace, when its whole namespace is locked.
    locked_ns: Mutex<Option<OwnedFd>>,
}

/// Where a failed call happened.
struct At {
    pid: i32,
    fd: i32,
}

impl At {
    fn err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> crate::error::Error + '_ {
        move |source| {
            DumpError::Fd {
                pid: self.pid,
                fd: self.fd,
                what,
                source,
            }
            .into()
        }
    }
}

impl TcpRepair {
    pub fn new(lock: Lock) -> TcpRepair {
        TcpRepair {
            lock,
            locked_any: Mutex::new(false),
            held: Mutex::default(),
            locked_ns: Mutex::default(),
        }
    }

    /// The lock of this dump (for inventory.img).
    pub fn net_lock(&self) -> &Lock {
        &self.lock
    }

    /// Locks connection `conn` (when `lock`), puts `sock` (crit's copy of
    /// `pid`'s `fd`) in repair mode and reads its state.
    pub fn dump(
        &self,
        sock: OwnedFd,
        conn: Conn,
        lock: bool,
        pid: i32,
        fd: i32,
        ino: u32,
    ) -> Result<Stream> {
        let at = At { pid, fd };
        let s = sock.as_fd();
        let reuseaddr = sockopt::get_int(s, libc::SOL_SOCKET, libc::SO_REUSEADDR)
            .map_err(at.err("SO_REUSEADDR"))?;
        if lock {
            let mut any = self.locked_any.lock().unwrap_or_else(|e| e.into_inner());
            self.lock
                .lock(&[conn], !*any)
                .map_err(|source| DumpError::NetLock {
                    pid,
                    fd,
                    ino,
                    source,
                })?;
            *any = true;
        }
        if let Err(e) = tr::set_repair(s, true) {
            // nftables: the table goes with the others, in resume().
            if lock && self.lock.method == Method::Iptables {
                let _ = self.lock.unlock(&[conn]);
            }
            return Err(at.err("TCP_REPAIR")(e));
        }
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Held {
                sock,
                conn,
                locked: lock,
                reuseaddr,
            });
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let s = held.last().expect("pushed above").sock.as_fd();
        read_state(s, &at, ino)
    }

    /// Locks the tree's network namespace `net` (once), as CRIU does for a
    /// tree with a namespace of its own.
    pub fn lock_ns(&self, net: &OwnedFd) -> std::io::Result<()> {
        let mut l = self.locked_ns.lock().unwrap_or_else(|e| e.into_inner());
        if l.is_some() {
            return Ok(());
        }
        crate::sys::ns::run_in(&[(net.as_fd(), libc::CLONE_NEWNET as u64)], || {
            self.lock.lock_ns()
        })??;
        *l = Some(net.try_clone()?);
        Ok(())
    }

    /// Lets every connection go on: repair mode off, SO_REUSEADDR back,
    /// unlocked. Errors are logged by the caller's choice: each is tried.
    pub fn resume(&self) -> Vec<String> {
        let mut errs = Vec::new();
        if let Some(net) = self
            .locked_ns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let r = crate::sys::ns::run_in(&[(net.as_fd(), libc::CLONE_NEWNET as u64)], || {
                self.lock.unlock_ns()
            });
            if let Err(e) = r.and_then(|r| r) {
                errs.push(format!("unlocking the tree's network namespace: {e}"));
            }
        }
        let mut locked = Vec::new();
        for h in self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let s = h.sock.as_fd();
            if let Err(e) = tr::set_repair(s, false) {
                errs.push(format!("TCP {:?}: leaving repair mode: {e}", h.conn));
            }
            let _ = sockopt::set_int(s, libc::SOL_SOCKET, libc::SO_REUSEADDR, h.reuseaddr);
            if h.locked {
                locked.push(h.conn);
            }
        }
        let mut any = self.locked_any.lock().unwrap_or_else(|e| e.into_inner());
        if *any {
            errs.extend(self.lock.unlock(&locked));
            *any = false;
        }
        errs
    }

    /// After the tree is killed: closes crit's copies in repair mode (no
    /// packet is sent) and leaves the connections locked for the restore.
    pub fn close_silently(&self) {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.locked_any.lock().unwrap_or_else(|e| e.into_inner()) = false;
        self.locked_ns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

impl Drop for TcpRepair {
    fn drop(&mut self) {
        let _ = self.resume();
    }
}

fn read_state(s: std::os::fd::BorrowedFd, at: &At, ino: u32) -> Result<Stream> {
    let info = tr::info(s).map_err(at.err("TCP_INFO"))?;
    let state = u32::from(info.state);
    if !tcp::is_repairable(state) {
        return Err(DumpError::TcpState {
            pid: at.pid,
            fd: at.fd,
            ino,
            state: info.state,
        }
        .into());
    }
    let mut outq_len = tr::outq_len(s).map_err(at.err("SIOCOUTQ"))?;
    let mut unsq_len = tr::unsent_len(s).map_err(at.err("SIOCOUTQNSD"))?;
    // Our FIN counts in both, as a byte it is not.
    if tcp::Fins::of(state).ours() {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    // SIOCINQ already leaves the peer's FIN out.
    let inq_len = tr::inq_len(s).map_err(at.err("SIOCINQ"))?;
    let mss = tr::maxseg(s).map_err(at.err("TCP_MAXSEG"))?;
    let opts = u32::from(info.options);
    let mut e = pb::TcpStreamEntry {
        inq_len,
        outq_len,
        unsq_len: Some(unsq_len),
        mss_clamp: mss,
        opt_mask: opts,
        ..Default::default()
    };
    if opts & tr::OPT_WSCALE != 0 {
        e.snd_wscale = u32::from(info.snd_wscale);
        e.rcv_wscale = Some(u32::from(info.rcv_wscale));
    }
    if opts & tr::OPT_TIMESTAMPS != 0 {
        e.timestamp = Some(tr::timestamp(s).map_err(at.err("TCP_TIMESTAMP"))?);
    }
    let w = tr::window(s).map_err(at.err("TCP_REPAIR_WINDOW"))?;
    e.snd_wl1 = Some(w.snd_wl1);
    e.snd_wnd = Some(w.snd_wnd);
    e.max_window = Some(w.max_window);
    e.rcv_wnd = Some(w.rcv_wnd);
    e.rcv_wup = Some(w.rcv_wup);
    tr::select_queue(s, tr::RECV_QUEUE).map_err(at.err("TCP_REPAIR_QUEUE"))?;
    e.inq_seq = tr::queue_seq(s).map_err(at.err("TCP_QUEUE_SEQ"))?;
    let inq = peek(s, inq_len, at, "receive queue")?;
    tr::select_queue(s, tr::SEND_QUEUE).map_err(at.err("TCP_REPAIR_QUEUE"))?;
    e.outq_seq = tr::queue_seq(s).map_err(at.err("TCP_QUEUE_SEQ"))?;
    let outq = peek(s, outq_len, at, "send queue")?;
    Ok(Stream {
        ino,
        state,
        entry: e,
        inq,
        outq,
    })
}

fn peek(s: std::os::fd::BorrowedFd, len: u32, at: &At, what: &'static str) -> Result<Vec<u8>> {
    if len == 0 {
        return Ok(Vec::new());
    }
    tr::peek_queue(s, len).map_err(at.err(what))
}

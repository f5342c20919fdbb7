//! The unix socket work that runs inside the restored tasks, where
//! SO_PEERCRED depends on who makes a socket: listen() again by each
//! listener's first holder, the unnamed pairs a task makes
//! ([`TaskPair`]), the connections through its listeners ([`TaskConn`]);
//! and what crit and the tasks both do to a socket once it exists: replay
//! a queue, set shutdown state, options and flags.

use super::addr;
use super::plan::{TaskConn, TaskPair};
use crate::error::Result;
use crate::image::pb;
use crate::restore::error::{FileError, FileFault, On};
use crate::restore::plan::{Packet, Plan};
use crate::restore::reservoir::Reservoir;
use nix::sys::socket::{self as so, AddressFamily, MsgFlags, SockFlag};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// How long a task waits for a connection it is to accept, or for room in
/// a listener's backlog: the tasks that connect run at the same time.
const CONN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The unix socket entry of file `id`.
fn usk(plan: &Plan, id: u32) -> Result<&pb::UnixSkEntry> {
    plan.unix.by_id(id).map(|s| &s.e).ok_or_else(|| {
        FileError::Refused {
            on: On::FileId(id),
            why: FileFault::NotUnix,
        }
        .into()
    })
}

/// Sends one queued message from `from` to the queue of unix socket `ino`,
/// with the files it passed (SCM_RIGHTS) as `fd_of` finds them open.
pub fn send_packet(
    from: RawFd,
    pkt: &Packet,
    ino: u32,
    fd_of: &dyn Fn(u32) -> Option<RawFd>,
) -> Result<()> {
    let r = if pkt.rights.is_empty() {
        so::send(from, &pkt.data, MsgFlags::MSG_DONTWAIT)
    } else {
        let fds = pkt
            .rights
            .iter()
            .map(|&id| {
                fd_of(id).ok_or_else(|| {
                    FileError::Refused {
                        on: On::Unix(ino),
                        why: FileFault::InFlight(id),
                    }
                    .into()
                })
            })
            .collect::<Result<Vec<RawFd>>>()?;
        let iov = [std::io::IoSlice::new(&pkt.data)];
        so::sendmsg::<()>(
            from,
            &iov,
            &[so::ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_DONTWAIT,
            None,
        )
    };
    match r {
        Ok(n) if n == pkt.data.len() => Ok(()),
        Ok(sent) => Err(FileError::Refused {
            on: On::Unix(ino),
            why: FileFault::ShortReplay {
                sent,
                len: pkt.data.len(),
            },
        }
        .into()),
        Err(source) => Err(FileError::Nix {
            on: On::Unix(ino),
            what: "queue replay",
            source,
        }
        .into()),
    }
}

/// Makes the socketpair `tp` in the calling task, with its queues (the
/// files their messages pass are found with `fd_of`), shutdown state and
/// options.
pub fn make_task_pair(
    plan: &Plan,
    tp: &TaskPair,
    fd_of: &dyn Fn(u32) -> Option<RawFd>,
) -> Result<(OwnedFd, OwnedFd)> {
    let (ea, eb) = (usk(plan, tp.a_id)?, usk(plan, tp.b_id)?);
    let (a, b) = so::socketpair(
        AddressFamily::Unix,
        addr::sock_type(ea.r#type),
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|source| FileError::Nix {
        on: On::PidUnix {
            pid: tp.pid,
            ino: ea.ino,
        },
        what: "socketpair",
        source,
    })?;
    // Each end's queue is sent from the other end. Packets of the two ends
    // are independent queues, so their relative order does not matter.
    let queues = [(tp.a_id, &b, ea.ino), (tp.b_id, &a, eb.ino)];
    for (pkt, from, ino) in queues
        .iter()
        .flat_map(|&(id, from, ino)| plan.packets_for(id).map(move |p| (p, from, ino)))
    {
        // The pair's own ends may be passed too.
        let own = |id: u32| {
            if id == tp.a_id {
                Some(a.as_raw_fd())
            } else if id == tp.b_id {
                Some(b.as_raw_fd())
            } else {
                fd_of(id)
            }
        };
        send_packet(from.as_raw_fd(), pkt, ino, &own)?;
    }
    for (fd, e, p) in [(&a, ea, eb), (&b, eb, ea)] {
        finish_socket(fd, e, Some(p))?;
    }
    Ok((a, b))
}

/// Shutdown state (a read shutdown only where the peer has not shut its
/// writing, which implies it), options and O_NONBLOCK of a connected or
/// bound socket, once its queue is in.
pub fn finish_socket(
    fd: &OwnedFd,
    e: &pb::UnixSkEntry,
    peer: Option<&pb::UnixSkEntry>,
) -> Result<()> {
    let ino = e.ino;
    let sh = e.shutdown.unwrap_or(0);
    let shut = |source| FileError::Nix {
        on: On::Unix(ino),
        what: "shutdown",
        source,
    };
    if sh & 2 != 0 {
        so::shutdown(fd.as_raw_fd(), so::Shutdown::Write).map_err(shut)?;
    }
    if sh & 1 != 0 && peer.is_none_or(|p| p.shutdown.unwrap_or(0) & 2 == 0) {
        so::shutdown(fd.as_raw_fd(), so::Shutdown::Read).map_err(shut)?;
    }
    crate::restore::skopts::set(fd, &e.opts, On::Unix(ino))?;
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), (e.flags & 0o4000) as i32).map_err(
        |source| {
            FileError::Io {
                on: On::Unix(ino),
                what: "set flags",
                source,
            }
            .into()
        },
    )
}

/// Run inside task `pid` (before it lays out its fds): listen() again on
/// the listeners it holds first, so that later clients see this task in
/// SO_PEERCRED rather than crit.
pub fn relisten(plan: &Plan, res: &Reservoir, pid: u32) -> Result<()> {
    for l in plan.unix.socks.iter().filter(|s| s.is_listener()) {
        if l.holders.first().map(|h| h.pid) != Some(pid) {
            continue;
        }
        let Some(fd) = res.raw(l.id) else { continue };
        let backlog = l.e.backlog.min(i32::MAX as u32) as i32;
        crate::sys::sock::listen_raw(fd, backlog).map_err(|source| FileError::Io {
            on: On::PidUnix { pid, ino: l.ino() },
            what: "listen",
            source,
        })?;
    }
    Ok(())
}

/// The connections a task accepts, per (listener, connecting task), in
/// the order that task connects them.
type Waiting<'a> = HashMap<(u32, u32), VecDeque<&'a TaskConn>>;

/// One task's side of the [`TaskConn`]s it takes part in.
struct Conns<'a> {
    plan: &'a Plan,
    res: &'a Reservoir,
    pid: u32,
    fd_of: &'a dyn Fn(u32) -> Option<RawFd>,
    note: &'a dyn Fn(u32, OwnedFd),
}

impl<'a> Conns<'a> {
    fn client_fd(&self, c: &TaskConn) -> Result<&'a OwnedFd> {
        self.res.by_id.get(&c.cli_id).ok_or_else(|| {
            FileError::Refused {
                on: On::Pid(self.pid),
                why: FileFault::NotMade(c.cli_id),
            }
            .into()
        })
    }

    /// Accepts one connection on `listener_id` and, if it is one this task
    /// waits for, fills both queues and finishes both ends. False when
    /// none came in time.
    fn accept_one(&self, listener_id: u32, waiting: &mut Waiting<'a>) -> Result<bool> {
        let pid = self.pid;
        let lfd = self.res.raw(listener_id).ok_or(FileError::Refused {
            on: On::Pid(pid),
            why: FileFault::ListenerNotOpen(listener_id),
        })?;
        let fd = match crate::sys::sock::accept_wait(lfd, CONN_WAIT) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Ok(false),
            Err(err) => {
                return Err(FileError::IoArg {
                    on: On::Pid(pid),
                    what: "accept on listener file id",
                    arg: listener_id.to_string(),
                    source: err,
                }
                .into())
            }
        };
        let from = so::getsockopt(&fd, so::sockopt::PeerCredentials)
            .map(|c| c.pid() as u32)
            .unwrap_or(0);
        let Some(c) = waiting
            .get_mut(&(listener_id, from))
            .and_then(|q| q.pop_front())
        else {
            // Not one of ours (a client outside the tree): dropped.
            return Ok(true);
        };
        let (acc, cli) = (usk(self.plan, c.acc_id)?, usk(self.plan, c.cli_id)?);
        let cfd = self.client_fd(c)?;
        for pkt in self.plan.packets_for(c.acc_id) {
            send_packet(cfd.as_raw_fd(), pkt, acc.ino, self.fd_of)?;
        }
        for pkt in self.plan.packets_for(c.cli_id) {
            send_packet(fd.as_raw_fd(), pkt, cli.ino, self.fd_of)?;
        }
        finish_socket(&fd, acc, Some(cli))?;
        finish_socket(cfd, cli, Some(acc))?;
        (self.note)(c.acc_id, fd);
        Ok(true)
    }

    /// Connects client `c`; while the backlog is full, accepts on it when
    /// this task is the acceptor, else waits for the acceptor.
    fn connect(&self, c: &TaskConn, accepts: bool, waiting: &mut Waiting<'a>) -> Result<()> {
        let cli = usk(self.plan, c.cli_id)?;
        let cfd = self.client_fd(c)?;
        let t = super::plan::Target {
            name: c.listener.clone(),
            dir: c.listener_dir.clone(),
        };
        let a = addr::of(&t, cli.ino)?;
        let deadline = std::time::Instant::now() + CONN_WAIT;
        loop {
            // The socket is non-blocking: a full backlog is EAGAIN.
            match addr::in_dir(a.dir.as_deref(), || so::connect(cfd.as_raw_fd(), &a.addr))? {
                Ok(()) => return Ok(()),
                Err(nix::errno::Errno::EAGAIN) if std::time::Instant::now() < deadline => {
                    if !(accepts && self.accept_one(c.listener_id, waiting)?) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                Err(err) => {
                    return Err(FileError::NixArg {
                        on: On::PidUnix {
                            pid: self.pid,
                            ino: cli.ino,
                        },
                        what: "connect to",
                        arg: a.addr.to_string(),
                        source: err,
                    }
                    .into())
                }
            }
        }
    }
}

/// Run inside task `pid` after it forked its children: connects the
/// clients it is the connector of, then accepts the connections it is the
/// acceptor of and finishes both their ends. An accepted connection is
/// matched to its client by the connecting task (SO_PEERCRED) and the
/// order that task connected in; one from outside the tree is closed.
/// `note` records an accepted end (file id, fd).
pub fn make_task_conns(
    plan: &Plan,
    res: &Reservoir,
    pid: u32,
    fd_of: &dyn Fn(u32) -> Option<RawFd>,
    note: &dyn Fn(u32, OwnedFd),
) -> Result<()> {
    let mine_c: Vec<&TaskConn> = res
        .task_conns
        .iter()
        .filter(|c| c.connector == pid)
        .collect();
    let mine_a: Vec<&TaskConn> = res
        .task_conns
        .iter()
        .filter(|c| c.acceptor == pid)
        .collect();
    if mine_c.is_empty() && mine_a.is_empty() {
        return Ok(());
    }
    let cx = Conns {
        plan,
        res,
        pid,
        fd_of,
        note,
    };
    let mut waiting: Waiting = HashMap::new();
    for c in &mine_a {
        waiting
            .entry((c.listener_id, c.connector))
            .or_default()
            .push_back(c);
    }
    let mut order = mine_c;
    order.sort_by_key(|c| (c.listener_id, c.cli_id));
    for c in order {
        let accepts = mine_a.iter().any(|a| a.listener_id == c.listener_id);
        cx.connect(c, accepts, &mut waiting)?;
    }
    let mut listeners: Vec<u32> = mine_a.iter().map(|c| c.listener_id).collect();
    listeners.sort_unstable();
    listeners.dedup();
    for l in listeners {
        while let Some(first) = waiting
            .iter()
            .find(|((lid, _), q)| *lid == l && !q.is_empty())
            .map(|(_, q)| q[0].connector)
        {
            if !cx.accept_one(l, &mut waiting)? {
                return Err(FileError::NoConnection {
                    pid,
                    from: first,
                    listener: l,
                    wait: CONN_WAIT,
                }
                .into());
            }
        }
    }
    Ok(())
}

//! Unix sockets, made in crit before the tree is forked: names bound
//! (deleted ones unlinked again, relative ones bound from their directory),
//! listeners with their pending connections, connected pairs rejoined
//! (accepted ends through their listener so that they keep its name),
//! queues replayed message by message, then shutdown state and options.
//! Sockets whose peer is outside the images are reconnected only with
//! consent, or replaced by an fd handed in with `--inherit-fd`.
//!
//! Where SO_PEERCRED depends on who made a socket, the tree makes it in
//! its own tasks (see child.rs): unnamed pairs ([`TaskPair`]), connections
//! through its listeners ([`TaskConn`]), and listen() again by each
//! listener's first holder ([`relisten`]).

use super::files::Reservoir;
use super::plan::{Packet, Plan};
use super::{Log, Options};
use crate::error::{Error, Result};
use crate::image::flags::USK_EXTERN;
use crate::image::pb;
use nix::sys::socket::{
    self as so, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

const ST_ESTABLISHED: u32 = 1;
const ST_LISTEN: u32 = 10;
const T_STREAM: u32 = 1;
const T_DGRAM: u32 = 2;
const T_SEQPACKET: u32 = 5;

fn type_name(t: u32) -> &'static str {
    match t {
        T_STREAM => "stream",
        T_DGRAM => "dgram",
        T_SEQPACKET => "seqpacket",
        _ => "unknown",
    }
}

/// A socket name as the images hold it, printable.
pub fn show_name(name: &[u8]) -> String {
    if name.is_empty() {
        return "(unnamed)".into();
    }
    if name[0] == 0 {
        return format!("@{}", String::from_utf8_lossy(&name[1..]));
    }
    String::from_utf8_lossy(trim_nul(name)).into_owned()
}

fn trim_nul(name: &[u8]) -> &[u8] {
    let mut n = name;
    while let [rest @ .., 0] = n {
        n = rest;
    }
    n
}

fn sock_type(t: u32, ino: u32) -> Result<SockType> {
    Ok(match t {
        T_STREAM => SockType::Stream,
        T_DGRAM => SockType::Datagram,
        T_SEQPACKET => SockType::SeqPacket,
        _ => {
            return Err(Error::msg(format!(
                "unix socket {ino}: unsupported type {t}"
            )))
        }
    })
}

/// An address to bind or connect to, with the directory a relative path
/// is resolved from.
struct Addr {
    addr: UnixAddr,
    dir: Option<String>,
}

fn addr_of(name: &[u8], dir: Option<&str>, ino: u32) -> Result<Addr> {
    let bad = |e: nix::Error| {
        Error::msg(format!(
            "unix socket {ino}: bad name {}: {e}",
            show_name(name)
        ))
    };
    if name.first() == Some(&0) {
        return Ok(Addr {
            addr: UnixAddr::new_abstract(&name[1..]).map_err(bad)?,
            dir: None,
        });
    }
    let path = std::ffi::OsStr::new(std::str::from_utf8(trim_nul(name)).map_err(|_| {
        Error::msg(format!(
            "unix socket {ino}: name {} is not UTF-8",
            show_name(name)
        ))
    })?);
    let rel = !path.as_encoded_bytes().starts_with(b"/");
    Ok(Addr {
        addr: UnixAddr::new(path).map_err(bad)?,
        dir: if rel { dir.map(str::to_string) } else { None },
    })
}

/// A name given on the command line: a path, or @name for abstract.
fn addr_from_arg(s: &str, ino: u32) -> Result<Addr> {
    let mut v = Vec::new();
    if let Some(a) = s.strip_prefix('@') {
        v.push(0);
        v.extend_from_slice(a.as_bytes());
    } else {
        v.extend_from_slice(s.as_bytes());
    }
    addr_of(&v, None, ino)
}

/// Runs `f` with the working directory set to `dir` (for relative names).
fn in_dir<T>(dir: Option<&str>, f: impl FnOnce() -> nix::Result<T>) -> Result<nix::Result<T>> {
    let Some(d) = dir else { return Ok(f()) };
    let old = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
    std::env::set_current_dir(d).map_err(|e| Error::io(format!("chdir {d}"), e))?;
    let r = f();
    std::env::set_current_dir(&old)
        .map_err(|e| Error::io(format!("chdir {}", old.display()), e))?;
    Ok(r)
}

struct Sk<'a> {
    id: u32,
    e: &'a pb::UnixSkEntry,
}

/// Makes every unix socket of the images and puts it into the reservoir.
pub fn open_unix(plan: &Plan, opts: &Options, res: &mut Reservoir, log: &mut Log) -> Result<()> {
    let mut by_ino: BTreeMap<u32, Sk> = BTreeMap::new();
    for f in plan.files.values() {
        if let Some(u) = &f.usk {
            by_ino.insert(u.ino, Sk { id: f.id, e: u });
        }
    }
    if by_ino.is_empty() {
        return Ok(());
    }
    let used: std::collections::HashSet<u32> = plan
        .tasks
        .iter()
        .flat_map(|t| t.fds.iter().map(|f| f.id))
        .collect();

    // Inherited sockets replace their image entry.
    let mut inherited: HashMap<u32, OwnedFd> = HashMap::new();
    for (n, what) in &opts.inherit_fds {
        if let Some(ino) = what
            .strip_prefix("socket:[")
            .and_then(|s| s.strip_suffix(']'))
        {
            let ino: u32 = ino
                .parse()
                .map_err(|_| Error::msg(format!("--inherit-fd fd[{n}]:{what}: bad inode")))?;
            if !by_ino.contains_key(&ino) {
                return Err(Error::msg(format!(
                    "--inherit-fd fd[{n}]:{what}: no unix socket {ino} in the images"
                )));
            }
            let fd = crate::sys::sock::dup_raw(*n)
                .map_err(|e| Error::io(format!("--inherit-fd fd[{n}]"), e))?;
            inherited.insert(ino, fd);
        }
    }

    // Outside peers: consent, reconnection target, or refusal.
    let mut refused = Vec::new();
    let mut ext_target: HashMap<u32, Addr> = HashMap::new();
    for sk in by_ino.values() {
        let e = sk.e;
        if e.uflags & USK_EXTERN != 0
            || e.peer == 0
            || !used.contains(&sk.id)
            || inherited.contains_key(&e.ino)
        {
            continue;
        }
        let peer = by_ino.get(&e.peer);
        let external = match peer {
            None => true,
            Some(p) => p.e.uflags & USK_EXTERN != 0,
        };
        if !external {
            continue;
        }
        let pname: &[u8] = peer.map(|p| p.e.name.as_slice()).unwrap_or(&[]);
        let consent = opts.ext_unix.all
            || opts.ext_unix.per.contains_key(&e.ino)
            || opts.ext_unix.per.contains_key(&e.peer);
        let path = opts
            .ext_unix
            .per
            .get(&e.ino)
            .or_else(|| opts.ext_unix.per.get(&e.peer))
            .cloned()
            .flatten();
        if !consent {
            refused.push(format!(
                "{} ({}, peer {})",
                e.ino,
                type_name(e.r#type),
                if pname.is_empty() {
                    "unnamed".to_string()
                } else {
                    show_name(pname)
                }
            ));
            continue;
        }
        let target = match path {
            Some(p) => addr_from_arg(&p, e.ino)?,
            None if !pname.is_empty() => addr_of(pname, None, e.ino)?,
            None => {
                return Err(Error::msg(format!(
                    "unix socket {}: its outside peer has no address; hand the socket in with --inherit-fd fd[N]:socket:[{}]",
                    e.ino, e.ino
                )))
            }
        };
        ext_target.insert(e.ino, target);
    }
    if !refused.is_empty() {
        return Err(Error::msg(format!(
            "unix sockets with a peer outside the images: {}; allow with --ext-unix-sk (or --ext-unix-sk=INO[=PATH])",
            refused.join(", ")
        )));
    }

    let mut made: HashMap<u32, OwnedFd> = HashMap::new();
    let new_sock = |e: &pb::UnixSkEntry| -> Result<OwnedFd> {
        so::socket(
            AddressFamily::Unix,
            sock_type(e.r#type, e.ino)?,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|err| Error::msg(format!("unix socket {}: socket: {err}", e.ino)))
    };
    let bind = |fd: &OwnedFd, e: &pb::UnixSkEntry, res: &mut Reservoir| -> Result<()> {
        let a = addr_of(&e.name, e.name_dir.as_deref(), e.ino)?;
        // A stale socket file from the dumped run is in the way.
        if let Some(p) = a.addr.path() {
            let full = match &a.dir {
                Some(d) => PathBuf::from(d).join(p),
                None => p.to_path_buf(),
            };
            if let Ok(m) = std::fs::symlink_metadata(&full) {
                if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) {
                    let _ = std::fs::remove_file(&full);
                }
            }
            in_dir(a.dir.as_deref(), || so::bind(fd.as_raw_fd(), &a.addr))?.map_err(|err| {
                Error::msg(format!(
                    "unix socket {}: bind {}: {err}",
                    e.ino,
                    full.display()
                ))
            })?;
            if let Some(perm) = &e.file_perms {
                let _ = std::fs::set_permissions(
                    &full,
                    std::os::unix::fs::PermissionsExt::from_mode(perm.mode & 0o7777),
                );
                let _ = std::os::unix::fs::lchown(&full, Some(perm.uid), Some(perm.gid));
            }
            if e.deleted == Some(true) {
                std::fs::remove_file(&full).map_err(|err| {
                    Error::io(
                        format!("unix socket {}: unlink {}", e.ino, full.display()),
                        err,
                    )
                })?;
            } else {
                res.created_paths.push(full);
            }
        } else {
            so::bind(fd.as_raw_fd(), &a.addr).map_err(|err| {
                Error::msg(format!(
                    "unix socket {}: bind {}: {err}",
                    e.ino,
                    show_name(&e.name)
                ))
            })?;
        }
        Ok(())
    };
    let connect = |fd: &OwnedFd, a: &Addr, ino: u32| -> Result<()> {
        in_dir(a.dir.as_deref(), || so::connect(fd.as_raw_fd(), &a.addr))?
            .map_err(|err| Error::msg(format!("unix socket {ino}: connect to {}: {err}", a.addr)))
    };

    // 1. Listeners and bound dgram sockets (those not in an unnamed pair).
    for sk in by_ino.values() {
        let e = sk.e;
        if e.uflags & USK_EXTERN != 0 || inherited.contains_key(&e.ino) {
            continue;
        }
        if e.state == ST_LISTEN {
            let fd = new_sock(e)?;
            if !e.name.is_empty() {
                bind(&fd, e, res)?;
            }
            so::listen(
                &fd,
                Backlog::new(e.backlog.min(i32::MAX as u32) as i32).unwrap_or(Backlog::MAXCONN),
            )
            .map_err(|err| Error::msg(format!("unix socket {}: listen: {err}", e.ino)))?;
            made.insert(e.ino, fd);
        } else if e.r#type == T_DGRAM && !e.name.is_empty() {
            let fd = new_sock(e)?;
            bind(&fd, e, res)?;
            made.insert(e.ino, fd);
        }
    }
    let listeners: HashMap<(&[u8], u32), u32> = by_ino
        .values()
        .filter(|s| s.e.state == ST_LISTEN && !s.e.name.is_empty())
        .map(|s| ((s.e.name.as_slice(), s.e.r#type), s.e.ino))
        .collect();
    // 2. Connected stream/seqpacket pairs, and unnamed dgram pairs.
    let inos: Vec<u32> = by_ino.keys().copied().collect();
    let mut owners: HashMap<u32, Vec<u32>> = HashMap::new();
    for t in &plan.tasks {
        for f in &t.fds {
            let o = owners.entry(f.id).or_default();
            if !o.contains(&t.pid) {
                o.push(t.pid);
            }
        }
    }
    let mut deferred: std::collections::HashSet<u32> = Default::default();
    // Listeners with connections still pending in their backlog: all their
    // connections are made by crit, pending ones in place (see TaskConn).
    let pending_at: std::collections::HashSet<u32> = by_ino
        .values()
        .filter(|s| {
            by_ino
                .get(&s.e.peer)
                .is_some_and(|l| l.e.state == ST_LISTEN)
        })
        .map(|s| s.e.peer)
        .collect();
    // The one task that holds every accepted end of a listener, if there
    // is one: only then can it accept them all (another acceptor could
    // take its connections).
    let mut acceptor_of: HashMap<u32, Option<u32>> = HashMap::new();
    for s in by_ino.values() {
        let named_conn = s.e.state == ST_ESTABLISHED && s.e.r#type != T_DGRAM;
        let Some(&l) = listeners
            .get(&(s.e.name.as_slice(), s.e.r#type))
            .filter(|_| named_conn)
        else {
            continue;
        };
        let only = match owners.get(&s.id).map(|v| v.as_slice()) {
            Some(&[one]) => Some(one),
            _ => None,
        };
        let a = acceptor_of.entry(l).or_insert(only);
        if *a != only {
            *a = None;
        }
    }
    // Sockets whose connection the tasks make: crit leaves their queues,
    // shutdown state and options to them.
    let mut in_task: std::collections::HashSet<u32> = Default::default();
    for &ino in &inos {
        let e = by_ino[&ino].e;
        if deferred.contains(&ino) {
            continue;
        }
        if made.contains_key(&ino)
            || inherited.contains_key(&ino)
            || e.uflags & USK_EXTERN != 0
            || e.peer == 0
        {
            continue;
        }
        let Some(p) = by_ino.get(&e.peer).map(|s| s.e) else {
            continue;
        };
        if p.peer != ino
            || p.uflags & USK_EXTERN != 0
            || made.contains_key(&p.ino)
            || inherited.contains_key(&p.ino)
        {
            continue;
        }
        // An unnamed pair is made inside the tree, by the nearest common
        // ancestor of the tasks that hold its ends (the task itself when it
        // holds both), before it forks its children: SO_PEERCRED then names
        // that task, as when the tree made the pair (see child.rs).
        let id_e = by_ino[&ino].id;
        let id_p = by_ino[&p.ino].id;
        let mut holders: Vec<u32> = Vec::new();
        for id in [id_e, id_p] {
            for &pid in owners.get(&id).map(|v| v.as_slice()).unwrap_or(&[]) {
                if !holders.contains(&pid) {
                    holders.push(pid);
                }
            }
        }
        let maker = common_ancestor(plan, &holders);
        if e.name.is_empty()
            && p.name.is_empty()
            && (e.state == ST_ESTABLISHED || e.r#type == T_DGRAM)
            && !ext_target.contains_key(&ino)
            && !ext_target.contains_key(&p.ino)
            && maker.is_some()
        {
            res.task_pairs.push(TaskPair {
                pid: maker.unwrap_or(0),
                a_id: id_e,
                b_id: id_p,
            });
            deferred.insert(ino);
            deferred.insert(p.ino);
            continue;
        }
        if e.r#type != T_DGRAM && e.state == ST_ESTABLISHED {
            // One named end is the accepted one: make it through its listener.
            let (acc, cli) = if !e.name.is_empty() && p.name.is_empty() {
                (e, p)
            } else if !p.name.is_empty() && e.name.is_empty() {
                (p, e)
            } else {
                (e, p)
            };
            let listener = if acc.name.is_empty() {
                None
            } else {
                listeners.get(&(acc.name.as_slice(), acc.r#type)).copied()
            };
            if let Some(l) = listener.filter(|l| made.contains_key(l)) {
                let le = &by_ino[&l];
                let holders = |id: u32| owners.get(&id).map(|v| v.as_slice()).unwrap_or(&[]);
                let live = |pid: &u32| plan.task(*pid).is_some_and(|t| t.zombie.is_none());
                let acc_holders = holders(by_ino[&acc.ino].id);
                let cli_holders = holders(by_ino[&cli.ino].id);
                // The tree connects it itself when the accepted end has one
                // holder (it must exist before that task forks) that holds
                // every accepted end of the listener, the name stays (not
                // deleted) and nothing is pending at the listener.
                if acc_holders.len() == 1
                    && acceptor_of.get(&l) == Some(&Some(acc_holders[0]))
                    && acc_holders.iter().all(live)
                    && cli_holders.first().is_some_and(live)
                    && used.contains(&le.id)
                    && le.e.deleted != Some(true)
                    && !pending_at.contains(&l)
                    && !ext_target.contains_key(&cli.ino)
                    && !ext_target.contains_key(&acc.ino)
                {
                    // Non-blocking until the acceptor sets its flags: the
                    // connector then sees a full backlog as EAGAIN.
                    let c = new_sock(cli)?;
                    crate::sys::fdops::set_status_flags(c.as_raw_fd(), libc::O_NONBLOCK).map_err(
                        |err| Error::io(format!("unix socket {}: set flags", cli.ino), err),
                    )?;
                    made.insert(cli.ino, c);
                    res.task_conns.push(TaskConn {
                        listener_id: le.id,
                        listener: acc.name.clone(),
                        listener_dir: acc.name_dir.clone(),
                        cli_id: by_ino[&cli.ino].id,
                        acc_id: by_ino[&acc.ino].id,
                        connector: cli_holders[0],
                        acceptor: acc_holders[0],
                    });
                    in_task.insert(cli.ino);
                    in_task.insert(acc.ino);
                    deferred.insert(acc.ino);
                    continue;
                }
                let c = new_sock(cli)?;
                let a = addr_of(&acc.name, acc.name_dir.as_deref(), acc.ino)?;
                connect(&c, &a, cli.ino)?;
                let a_fd = crate::sys::sock::accept(made[&l].as_raw_fd()).map_err(|err| {
                    Error::io(format!("unix socket {}: accept on {l}", acc.ino), err)
                })?;
                made.insert(cli.ino, c);
                made.insert(acc.ino, a_fd);
                continue;
            }
        }
        if e.state == ST_ESTABLISHED || e.r#type == T_DGRAM {
            let (a, b) = so::socketpair(
                AddressFamily::Unix,
                sock_type(e.r#type, ino)?,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|err| {
                Error::msg(format!(
                    "unix socket {ino}: socketpair with {}: {err}",
                    p.ino
                ))
            })?;
            if !e.name.is_empty() || !p.name.is_empty() {
                log.warn(format!(
                    "unix sockets {ino} and {}: rejoined as a pair; their names are not restored",
                    p.ino
                ));
            }
            made.insert(ino, a);
            made.insert(p.ino, b);
        }
    }
    // 3. Pending connections, connected dgram senders, outside peers, the rest.
    let inos: Vec<u32> = inos.into_iter().filter(|i| !deferred.contains(i)).collect();
    let mut orphan_senders: HashMap<u32, OwnedFd> = HashMap::new();
    let queued_ids: std::collections::HashSet<u32> =
        plan.packets.iter().map(|p| p.id_for).collect();
    for &ino in &inos {
        let e = by_ino[&ino].e;
        if made.contains_key(&ino) || inherited.contains_key(&ino) || e.uflags & USK_EXTERN != 0 {
            continue;
        }
        // The unaccepted end of a pending connection (crit dump writes one
        // when the client had sent data): the client's connect makes it,
        // and its queue is sent from the client below.
        let unaccepted = e.state == ST_ESTABLISHED
            && e.r#type != T_DGRAM
            && !used.contains(&by_ino[&ino].id)
            && by_ino.get(&e.peer).is_some_and(|c| {
                by_ino
                    .get(&c.e.peer)
                    .is_some_and(|l| l.e.state == ST_LISTEN && l.e.name == e.name)
            });
        if unaccepted {
            continue;
        }
        // A connection whose other end now leads elsewhere (`crit edit
        // --external` on its peer): it comes back with its queue and a
        // closed other end (EOF for stream/seqpacket, unconnected dgram).
        let peer_e = by_ino.get(&e.peer).map(|s| s.e);
        let queued = queued_ids.contains(&by_ino[&ino].id);
        let orphan = match peer_e {
            Some(p)
                if p.peer != ino
                    && p.uflags & USK_EXTERN == 0
                    && !ext_target.contains_key(&ino) =>
            {
                if e.r#type == T_DGRAM {
                    p.name.is_empty()
                } else {
                    p.state != ST_LISTEN
                }
            }
            // Connected once, the other end gone (peer 0): its queue, then EOF.
            None if e.peer == 0 && !ext_target.contains_key(&ino) => {
                (e.r#type != T_DGRAM && e.state == ST_ESTABLISHED)
                    || (e.r#type == T_DGRAM && e.name.is_empty() && queued)
            }
            _ => false,
        };
        if orphan {
            let (a, b) = so::socketpair(
                AddressFamily::Unix,
                sock_type(e.r#type, ino)?,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map_err(|err| Error::msg(format!("unix socket {ino}: socketpair: {err}")))?;
            if !e.name.is_empty() {
                log.warn(format!(
                    "unix socket {ino}: its peer now leads elsewhere; its name is not restored"
                ));
            }
            orphan_senders.insert(ino, b);
            made.insert(ino, a);
            continue;
        }
        let fd = new_sock(e)?;
        if !e.name.is_empty() && e.state != ST_ESTABLISHED {
            bind(&fd, e, res)?;
        }
        if let Some(a) = ext_target.get(&ino) {
            // The task connects it itself, as itself (see child.rs).
            res.ext_connects.push(super::files::ExtConnect {
                id: by_ino[&ino].id,
                ino,
                addr: a.addr,
            });
            log.info(format!(
                "unix socket {ino}: will reconnect to outside peer {}",
                a.addr
            ));
        } else if e.peer != 0 {
            if let Some(p) = by_ino.get(&e.peer).map(|s| s.e) {
                if p.name.is_empty() {
                    return Err(Error::msg(format!(
                        "unix socket {ino}: its peer {} has no name to connect to",
                        p.ino
                    )));
                }
                let a = addr_of(&p.name, p.name_dir.as_deref(), p.ino)?;
                connect(&fd, &a, ino)?;
            }
        }
        made.insert(ino, fd);
    }

    // 4. Queues: send each packet from the socket that delivers to its owner.
    let id_to_ino: HashMap<u32, u32> = by_ino.values().map(|s| (s.id, s.e.ino)).collect();
    let mut temp_senders: HashMap<u32, OwnedFd> = HashMap::new();
    let mut lost: BTreeMap<u32, usize> = BTreeMap::new();
    for pkt in &plan.packets {
        let Some(&ino) = id_to_ino.get(&pkt.id_for) else {
            return Err(Error::msg(format!(
                "sk-queues.img: queue for file id {} which is not a unix socket",
                pkt.id_for
            )));
        };
        let e = by_ino[&ino].e;
        if deferred.contains(&ino) || in_task.contains(&ino) {
            continue;
        }
        if inherited.contains_key(&ino) {
            *lost.entry(ino).or_default() += pkt.data.len();
            continue;
        }
        let peer_ext = e.peer != 0
            && by_ino
                .get(&e.peer)
                .is_none_or(|p| p.e.uflags & USK_EXTERN != 0);
        if peer_ext && e.r#type != T_DGRAM {
            *lost.entry(ino).or_default() += pkt.data.len();
            continue;
        }
        let sender = if let Some(o) = orphan_senders.get(&ino) {
            Some(o)
        } else if e.r#type != T_DGRAM {
            made.get(&e.peer)
        } else if let Some(p) = by_ino
            .get(&e.peer)
            .filter(|p| p.e.peer == ino && made.contains_key(&p.e.ino))
        {
            made.get(&p.e.ino)
        } else {
            by_ino
                .values()
                .find(|s| s.e.peer == ino && made.contains_key(&s.e.ino))
                .and_then(|s| made.get(&s.e.ino))
        };
        let fd_of = |id: u32| {
            res.raw(id).or_else(|| {
                id_to_ino
                    .get(&id)
                    .and_then(|i| made.get(i))
                    .map(|f| f.as_raw_fd())
            })
        };
        if let Some(s) = sender {
            send_packet(s.as_raw_fd(), pkt, ino, &fd_of)?;
        } else if e.r#type == T_DGRAM && !e.name.is_empty() {
            let t = match temp_senders.entry(ino) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    let t = new_sock(e)?;
                    let a = addr_of(&e.name, e.name_dir.as_deref(), ino)?;
                    if e.deleted == Some(true) {
                        *lost.entry(ino).or_default() += pkt.data.len();
                        continue;
                    }
                    connect(&t, &a, ino)?;
                    v.insert(t)
                }
            };
            send_packet(t.as_raw_fd(), pkt, ino, &fd_of)?;
        } else {
            *lost.entry(ino).or_default() += pkt.data.len();
        }
    }
    for (ino, n) in lost {
        log.warn(format!(
            "unix socket {ino}: {n} bytes the outside peer had sent are not redelivered (they stay in the images)"
        ));
    }

    // The other ends of orphaned connections go: their peers read EOF.
    drop(orphan_senders);
    // 5. Shutdown state, options, status flags.
    for (&ino, fd) in made.iter().filter(|(i, _)| !in_task.contains(i)) {
        let e = by_ino[&ino].e;
        let peer = by_ino.get(&e.peer).map(|p| p.e);
        finish_socket(fd, e, peer)?;
    }
    for (ino, fd) in inherited {
        made.insert(ino, fd);
    }
    for sk in by_ino.values() {
        if let Some(fd) = made.remove(&sk.e.ino) {
            if used.contains(&sk.id) {
                res.by_id.insert(sk.id, fd);
            } else {
                res.keep.push(fd);
            }
        }
    }
    res.keep.extend(temp_senders.into_values());
    Ok(())
}

/// The nearest task that is `pids` or an ancestor of all of them (None if
/// `pids` is empty or a holder is a zombie).
fn common_ancestor(plan: &Plan, pids: &[u32]) -> Option<u32> {
    let chain = |mut p: u32| -> Vec<u32> {
        let mut v = vec![p];
        while let Some(t) = plan.task(p) {
            if t.ppid == 0 || plan.task(t.ppid).is_none() {
                break;
            }
            p = t.ppid;
            v.push(p);
        }
        v
    };
    let first = *pids.first()?;
    if pids
        .iter()
        .any(|&p| plan.task(p).is_none_or(|t| t.zombie.is_some()))
    {
        return None;
    }
    let chains: Vec<Vec<u32>> = pids.iter().map(|&p| chain(p)).collect();
    chain(first)
        .into_iter()
        .find(|a| chains.iter().all(|c| c.contains(a)))
}

/// An unnamed connected pair made by task `pid` (which holds one or both
/// ends, or is the nearest common ancestor of the tasks that do).
pub struct TaskPair {
    pub pid: u32,
    pub a_id: u32,
    pub b_id: u32,
}

/// Makes a [`TaskPair`] (run inside the task): socketpair, queues
/// replayed, shutdown state, options, flags.
/// Sends one queued message from `from` to the queue of unix socket `ino`,
/// with the files it passed (SCM_RIGHTS) as `fd_of` finds them open.
fn send_packet(
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
                    Error::msg(format!(
                        "unix socket {ino}: a queued message passes file id {id} (SCM_RIGHTS), \
                         which is not open at that point of the restore (a file only in flight, \
                         or a socket made later); not supported"
                    ))
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
        Ok(n) => Err(Error::msg(format!(
            "unix socket {ino}: queue replay sent {n} of {} bytes",
            pkt.data.len()
        ))),
        Err(err) => Err(Error::msg(format!(
            "unix socket {ino}: queue replay: {err}"
        ))),
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
    let get = |id: u32| -> Result<&pb::UnixSkEntry> {
        plan.files
            .get(&id)
            .and_then(|f| f.usk.as_ref())
            .ok_or_else(|| Error::msg(format!("file id {id}: not a unix socket")))
    };
    let (ea, eb) = (get(tp.a_id)?, get(tp.b_id)?);
    let (a, b) = so::socketpair(
        AddressFamily::Unix,
        sock_type(ea.r#type, ea.ino)?,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|err| {
        Error::msg(format!(
            "pid {}: unix socket {}: socketpair: {err}",
            tp.pid, ea.ino
        ))
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
fn finish_socket(fd: &OwnedFd, e: &pb::UnixSkEntry, peer: Option<&pb::UnixSkEntry>) -> Result<()> {
    let ino = e.ino;
    let sh = e.shutdown.unwrap_or(0);
    if sh & 2 != 0 {
        so::shutdown(fd.as_raw_fd(), so::Shutdown::Write)
            .map_err(|err| Error::msg(format!("unix socket {ino}: shutdown: {err}")))?;
    }
    if sh & 1 != 0 && peer.is_none_or(|p| p.shutdown.unwrap_or(0) & 2 == 0) {
        so::shutdown(fd.as_raw_fd(), so::Shutdown::Read)
            .map_err(|err| Error::msg(format!("unix socket {ino}: shutdown: {err}")))?;
    }
    set_opts(fd, &e.opts, ino)?;
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), (e.flags & 0o4000) as i32)
        .map_err(|err| Error::io(format!("unix socket {ino}: set flags"), err))
}

fn set_opts(fd: &OwnedFd, o: &pb::SkOptsEntry, ino: u32) -> Result<()> {
    use nix::sys::socket::sockopt;
    let err = |what: &str, e: nix::Error| Error::msg(format!("unix socket {ino}: set {what}: {e}"));
    // The kernel doubles what is set; the images hold the doubled value.
    if o.so_sndbuf != 212992 && o.so_sndbuf >= 4608 {
        so::setsockopt(fd, sockopt::SndBufForce, &(o.so_sndbuf as usize / 2))
            .map_err(|e| err("SO_SNDBUF", e))?;
    }
    if o.so_rcvbuf != 212992 && o.so_rcvbuf >= 2304 {
        so::setsockopt(fd, sockopt::RcvBufForce, &(o.so_rcvbuf as usize / 2))
            .map_err(|e| err("SO_RCVBUF", e))?;
    }
    if o.so_snd_tmo_sec != 0 || o.so_snd_tmo_usec != 0 {
        let tv = nix::sys::time::TimeVal::new(o.so_snd_tmo_sec as i64, o.so_snd_tmo_usec as i64);
        so::setsockopt(fd, sockopt::SendTimeout, &tv).map_err(|e| err("SO_SNDTIMEO", e))?;
    }
    if o.so_rcv_tmo_sec != 0 || o.so_rcv_tmo_usec != 0 {
        let tv = nix::sys::time::TimeVal::new(o.so_rcv_tmo_sec as i64, o.so_rcv_tmo_usec as i64);
        so::setsockopt(fd, sockopt::ReceiveTimeout, &tv).map_err(|e| err("SO_RCVTIMEO", e))?;
    }
    if o.so_passcred == Some(true) {
        so::setsockopt(fd, sockopt::PassCred, &true).map_err(|e| err("SO_PASSCRED", e))?;
    }
    if let Some(m) = o.so_mark.filter(|&m| m != 0) {
        so::setsockopt(fd, sockopt::Mark, &m).map_err(|e| err("SO_MARK", e))?;
    }
    Ok(())
}

/// A connection through an in-tree listener that the tree makes itself,
/// so that SO_PEERCRED of the accepted end names the task that connected:
/// crit made the client socket (unconnected, non-blocking), `connector`
/// (its first holder) connects it, and `acceptor` (the accepted end's only
/// holder) accepts it, then fills both queues and sets both ends' shutdown
/// state, options and flags (it holds the client end too until it lays out
/// its fds), so that no shutdown comes before a queue is in.
pub struct TaskConn {
    pub listener_id: u32,
    /// The listener's name (the accepted end carries it too).
    pub listener: Vec<u8>,
    pub listener_dir: Option<String>,
    pub cli_id: u32,
    pub acc_id: u32,
    pub connector: u32,
    pub acceptor: u32,
}

/// How long a task waits for a connection it is to accept, or for room in
/// a listener's backlog: the tasks that connect run at the same time.
const CONN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Run inside task `pid` (before it lays out its fds): listen() again on
/// the listeners it holds first, so that later clients see this task in
/// SO_PEERCRED rather than crit.
pub fn relisten(plan: &Plan, res: &super::files::Reservoir, pid: u32) -> Result<()> {
    let Some(t) = plan.task(pid) else {
        return Ok(());
    };
    for f in &t.fds {
        let Some(e) = plan
            .files
            .get(&f.id)
            .and_then(|x| x.usk.as_ref())
            .filter(|e| e.state == ST_LISTEN)
        else {
            continue;
        };
        let first = plan.first_holder(f.id);
        if first != Some(pid) {
            continue;
        }
        let Some(fd) = res.raw(f.id) else { continue };
        let backlog = e.backlog.min(i32::MAX as u32) as i32;
        crate::sys::sock::listen_raw(fd, backlog)
            .map_err(|err| Error::io(format!("pid {pid}: unix socket {}: listen", e.ino), err))?;
    }
    Ok(())
}

/// Run inside task `pid` after it forked its children: connects the
/// clients it is the connector of, then accepts the connections it is the
/// acceptor of and finishes both their ends. An accepted connection is
/// matched to its client by the connecting task (SO_PEERCRED) and the
/// order that task connected in; one from outside the tree is closed.
/// `note` records an accepted end (file id, fd).
pub fn make_task_conns(
    plan: &Plan,
    res: &super::files::Reservoir,
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
    let usk = |id: u32| -> Result<&pb::UnixSkEntry> {
        plan.files
            .get(&id)
            .and_then(|f| f.usk.as_ref())
            .ok_or_else(|| Error::msg(format!("file id {id}: not a unix socket")))
    };
    // Still to accept, per (listener, connecting task), in connect order.
    let mut waiting: HashMap<(u32, u32), std::collections::VecDeque<&TaskConn>> = HashMap::new();
    for c in &mine_a {
        waiting
            .entry((c.listener_id, c.connector))
            .or_default()
            .push_back(c);
    }
    let accept_one = |listener_id: u32,
                      waiting: &mut HashMap<_, std::collections::VecDeque<&TaskConn>>|
     -> Result<bool> {
        let lfd = res.raw(listener_id).ok_or_else(|| {
            Error::msg(format!(
                "pid {pid}: listener file id {listener_id} is not open"
            ))
        })?;
        let fd = match crate::sys::sock::accept_wait(lfd, CONN_WAIT) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Ok(false),
            Err(err) => {
                return Err(Error::io(
                    format!("pid {pid}: accept on listener file id {listener_id}"),
                    err,
                ))
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
        let (acc, cli) = (usk(c.acc_id)?, usk(c.cli_id)?);
        let cfd = res
            .by_id
            .get(&c.cli_id)
            .ok_or_else(|| Error::msg(format!("pid {pid}: unix socket {}: not made", cli.ino)))?;
        for pkt in plan.packets_for(c.acc_id) {
            send_packet(cfd.as_raw_fd(), pkt, acc.ino, fd_of)?;
        }
        for pkt in plan.packets_for(c.cli_id) {
            send_packet(fd.as_raw_fd(), pkt, cli.ino, fd_of)?;
        }
        finish_socket(&fd, acc, Some(cli))?;
        finish_socket(cfd, cli, Some(acc))?;
        note(c.acc_id, fd);
        Ok(true)
    };
    let accepts_on = |l: u32| mine_a.iter().any(|c| c.listener_id == l);
    let mut order = mine_c.clone();
    order.sort_by_key(|c| (c.listener_id, c.cli_id));
    for c in order {
        let (cli, acc) = (usk(c.cli_id)?, usk(c.acc_id)?);
        let cfd = res
            .by_id
            .get(&c.cli_id)
            .ok_or_else(|| Error::msg(format!("pid {pid}: unix socket {}: not made", cli.ino)))?;
        let a = addr_of(&c.listener, c.listener_dir.as_deref(), acc.ino)?;
        let deadline = std::time::Instant::now() + CONN_WAIT;
        loop {
            // The socket is non-blocking: a full backlog is EAGAIN.
            match in_dir(a.dir.as_deref(), || so::connect(cfd.as_raw_fd(), &a.addr))? {
                Ok(()) => break,
                Err(nix::errno::Errno::EAGAIN) if std::time::Instant::now() < deadline => {
                    // The backlog is full: take one in if this task is the
                    // one to, else let the acceptor catch up.
                    if !(accepts_on(c.listener_id) && accept_one(c.listener_id, &mut waiting)?) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
                Err(err) => {
                    return Err(Error::msg(format!(
                        "pid {pid}: unix socket {}: connect to {}: {err}",
                        cli.ino, a.addr
                    )))
                }
            }
        }
    }
    let listeners: Vec<u32> = {
        let mut v: Vec<u32> = mine_a.iter().map(|c| c.listener_id).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for l in listeners {
        while waiting
            .iter()
            .any(|((lid, _), q)| *lid == l && !q.is_empty())
        {
            if !accept_one(l, &mut waiting)? {
                let (_, q) = waiting
                    .iter()
                    .find(|((lid, _), q)| *lid == l && !q.is_empty())
                    .ok_or_else(|| Error::msg("accept bookkeeping"))?;
                return Err(Error::msg(format!(
                    "pid {pid}: no connection from pid {} reached listener file id {l} in {:?}",
                    q[0].connector, CONN_WAIT
                )));
            }
        }
    }
    Ok(())
}

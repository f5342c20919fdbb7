//! Sockets: unix (every type, with names, peers, queues, shutdown state,
//! external peers), TCP/UDP listening or unconnected, netlink. Topology
//! comes from NETLINK_SOCK_DIAG; options and queued data from a copy of
//! the target's descriptor (pidfd_getfd), read with MSG_PEEK and
//! SO_PEEK_OFF so nothing is consumed.

use super::error::{DumpError, OutsidePeer, OutsidePeers};
use super::fdscan::Fd;
use super::files::{fown, FileTable, FD_INETSK, FD_NETLINKSK, FD_PACKETSK, FD_UNIXSK};
use super::freeze::Frozen;
use crate::error::{Error, Result};
use crate::image::pb;
use crate::image::typed::ImageBuilder;
use crate::sys::sockdiag::{self, InetDiag, UnixDiag};
use crate::sys::sockopt;
use nix::libc;
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::model::unix::external_entry;

// The diag's type and state numbers (a u8 there), named as the model does.
const SOCK_STREAM: u8 = crate::model::unix::SOCK_STREAM as u8;
const SOCK_DGRAM: u8 = crate::model::unix::SOCK_DGRAM as u8;
const TCP_LISTEN: u8 = crate::model::unix::ST_LISTEN as u8;
const TCP_CLOSE: u8 = crate::model::unix::ST_CLOSE as u8;

struct UnixSk {
    pid: i32,
    fd: i32,
    id: u32,
    flags: u32,
    diag: UnixDiag,
    opts: pb::SkOptsEntry,
    name_dir: Option<String>,
    deleted: bool,
    file_perms: Option<pb::FilePermsEntry>,
    fown: pb::FownEntry,
}

#[derive(Default)]
pub struct Sockets {
    unix: Option<HashMap<u32, UnixDiag>>,
    inet: Option<HashMap<u32, InetDiag>>,
    netlink: Option<HashMap<u32, (u32, u32)>>,
    packet: Option<HashMap<u32, sockdiag::PacketDiag>>,
    pending: Vec<UnixSk>,
    pub queues: Option<ImageBuilder>,
    pub count: usize,
    pub net_ns_id: Option<u32>,
    /// The tree's network namespace when it is not crit's: sock_diag is
    /// asked from inside it (it shows the sockets of its caller's).
    pub net_ns: Option<std::os::fd::OwnedFd>,
    /// A task of the tree, whose /proc/PID/net shows its namespace.
    pub net_pid: Option<i32>,
    /// The buffer queued messages are peeked into, reused.
    peek_buf: Vec<u8>,
    /// Queues with a message that passed files (SCM_RIGHTS): written once
    /// every descriptor of the tree has its id (see [`Sockets::finish`]).
    with_rights: Vec<HeldQueue>,
    /// The descriptors those messages passed, once their queues are
    /// written: kept open until the dump ends, as a file only in flight
    /// is read through crit's own descriptor (a memfd's contents, when
    /// pages are written).
    passed: Vec<Rights>,
    /// Connections pending in a listener whose client already sent data:
    /// read at the very end (see [`Sockets::drain_pending`]).
    drains: Vec<Drain>,
    /// Established TCP connections in repair mode (shared with `dump`,
    /// which lets them go or closes them when the dump ends).
    pub repair: Option<std::sync::Arc<super::tcp::TcpRepair>>,
    /// Their state, for tcp-stream-INO.img.
    pub streams: Vec<super::tcp::Stream>,
}

/// The unaccepted end of a pending connection that holds data: written
/// as a unix socket entry of its own (its peer is the client; no task
/// holds it), its data as that entry's queue.
struct Drain {
    /// Who holds the listener, and where.
    listener: (i32, i32),
    listener_ino: u32,
    client_ino: u32,
    /// The entry written for the unaccepted end, and the inode number it
    /// was given.
    id: u32,
    ino: u32,
}

/// One queued message, as peeked.
struct Peeked {
    entry: pb::SkPacketEntry,
    data: Vec<u8>,
    /// The files it passed, received into crit by the peek.
    rights: Rights,
}

/// Descriptors a peek installed in crit; closed when dropped.
#[derive(Default)]
struct Rights(Vec<std::os::fd::RawFd>);

impl Drop for Rights {
    fn drop(&mut self) {
        for &f in &self.0 {
            close_installed(f);
        }
    }
}

/// A queue held back until the files its messages passed have ids.
struct HeldQueue {
    pid: i32,
    fd: i32,
    ino: u32,
    msgs: Vec<Peeked>,
}

/// A unix socket whose queue is read: held by `pid` at `fd`, file id
/// `id`, read through crit's copy `sk`.
#[derive(Clone, Copy)]
struct QueueOf<'a> {
    pid: i32,
    fd: i32,
    id: u32,
    d: &'a UnixDiag,
    sk: BorrowedFd<'a>,
}

/// A socket descriptor of the tree: task, fd, file id.
#[derive(Clone, Copy)]
pub struct HeldSocket<'a> {
    pub pid: i32,
    pub fd: &'a Fd,
    pub id: u32,
}

/// A failed call on crit's copy of `pid`'s socket `fd`.
fn io(pid: i32, fd: i32, what: &'static str, e: impl Into<std::io::Error>) -> Error {
    DumpError::Fd {
        pid,
        fd,
        what,
        source: e.into(),
    }
    .into()
}

/// A failed sock_diag dump of every unix socket.
fn unix_diag_err(source: std::io::Error) -> DumpError {
    DumpError::Call {
        what: "sock_diag: unix sockets",
        source,
    }
}

/// What sock_diag would say of an inet socket it does not list (crit's
/// copy `s`, of `family`): a closed TCP or UDP socket (state CLOSE, the
/// address it is bound to, or zeros), or a raw or ping (ICMP datagram)
/// socket, which have no diag CRIU's images rely on (state CLOSE, or
/// ESTABLISHED with the peer it is connected to; the "port" of a raw
/// socket is its protocol, of a ping socket its identifier). None for
/// any other socket, and for a TCP or UDP one with a peer.
fn closed_inet(s: BorrowedFd, family: i32, ino: u32, pid: i32) -> Option<InetDiag> {
    use nix::sys::socket::{getpeername, getsockname, SockaddrLike, SockaddrStorage};
    let (ty, proto) = (
        sockopt::get_int(s, libc::SOL_SOCKET, libc::SO_TYPE).ok()?,
        sockopt::get_int(s, libc::SOL_SOCKET, libc::SO_PROTOCOL).ok()?,
    );
    let tcp = (libc::SOCK_STREAM, libc::IPPROTO_TCP);
    let udp = (libc::SOCK_DGRAM, libc::IPPROTO_UDP);
    let ping = (libc::SOCK_DGRAM, libc::IPPROTO_ICMP) == (ty, proto)
        || (libc::SOCK_DGRAM, libc::IPPROTO_ICMPV6) == (ty, proto);
    let peered = ty == libc::SOCK_RAW || ping;
    let inet = family == libc::AF_INET || family == libc::AF_INET6;
    if !inet || ((ty, proto) != tcp && (ty, proto) != udp && !peered) {
        return None;
    }
    let raw = std::os::fd::AsRawFd::as_raw_fd(&s);
    let peer = getpeername::<SockaddrStorage>(raw).ok();
    if peer.is_some() && !peered {
        return None;
    }
    let me = getsockname::<SockaddrStorage>(raw).ok()?;
    let mut d = InetDiag {
        family: family as u8,
        protocol: proto as u8,
        state: TCP_CLOSE,
        ino,
        ..Default::default()
    };
    let words = |b: &[u8]| -> [u32; 4] {
        let mut w = [0u32; 4];
        for (i, c) in b.chunks_exact(4).take(4).enumerate() {
            w[i] = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        w
    };
    let end = |a: &SockaddrStorage| -> Option<(u16, [u32; 4])> {
        if let Some(a) = a.as_sockaddr_in() {
            Some((a.port(), words(&a.ip().octets())))
        } else if let Some(a) = a.as_sockaddr_in6() {
            Some((a.port(), words(&a.ip().octets())))
        } else if a.family().is_some() {
            None
        } else {
            Some((0, [0; 4]))
        }
    };
    (d.sport, d.src) = end(&me)?;
    if let Some(p) = peer {
        (d.dport, d.dst) = end(&p)?;
        d.state = crate::model::tcp::ESTABLISHED as u8;
    } else if peered {
        // getpeername refuses a socket whose peer has no port (a raw
        // one, a ping one connected as ping does it); its peer and state
        // are in /proc/PID/net/raw or icmp.
        let table = if ty == libc::SOCK_RAW { "raw" } else { "icmp" };
        if let Some((state, dst)) = proc_peer(pid, family, ino, table) {
            (d.state, d.dst) = (state, dst);
        }
    }
    Some(d)
}

/// The state and remote address of socket `ino` of task `pid` from
/// /proc/PID/net/`table` (raw, icmp; with a 6 for IPv6): addresses as
/// the kernel's words, in hex.
fn proc_peer(pid: i32, family: i32, ino: u32, table: &str) -> Option<(u8, [u32; 4])> {
    let six = if family == libc::AF_INET6 { "6" } else { "" };
    let t = std::fs::read_to_string(format!("/proc/{pid}/net/{table}{six}")).ok()?;
    t.lines().skip(1).find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() < 10 || w[9].parse::<u32>().ok()? != ino {
            return None;
        }
        let addr = w[2].split(':').next()?;
        let mut dst = [0u32; 4];
        for (i, c) in addr.as_bytes().chunks(8).take(4).enumerate() {
            dst[i] = u32::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok()?;
        }
        Some((u8::from_str_radix(w[3], 16).ok()?, dst))
    })
}

/// Every TCP and UDP socket (IPv4 and IPv6) sock_diag shows; a family
/// or protocol the kernel has no diag module for shows none.
fn inet_diag(net: Option<&std::os::fd::OwnedFd>) -> Result<HashMap<u32, InetDiag>> {
    let mut m = HashMap::new();
    for fam in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        for proto in [libc::IPPROTO_TCP as u8, libc::IPPROTO_UDP as u8] {
            match in_net(net, || sockdiag::inet_sockets(fam, proto)) {
                Ok(x) => m.extend(x),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(source) => {
                    let what = "sock_diag: inet sockets";
                    return Err(DumpError::Call { what, source }.into());
                }
            }
        }
    }
    Ok(m)
}

/// Runs a sock_diag query `f` in network namespace `net` (crit's own
/// when None).
fn in_net<T: Send>(
    net: Option<&std::os::fd::OwnedFd>,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    use std::os::fd::AsFd;
    match net {
        None => f(),
        Some(fd) => crate::sys::ns::run_in(&[(fd.as_fd(), libc::CLONE_NEWNET as u64)], f)?,
    }
}

impl Sockets {
    /// Every unix socket of the tree's network namespace.
    fn unix_diag(&self) -> Result<HashMap<u32, UnixDiag>> {
        Ok(in_net(self.net_ns.as_ref(), sockdiag::unix_sockets).map_err(unix_diag_err)?)
    }

    // The maps are read once, on first use (take and put back: no
    // "missing" case to handle).
    fn unix_map(&mut self) -> Result<&HashMap<u32, UnixDiag>> {
        let m = match self.unix.take() {
            Some(m) => m,
            None => self.unix_diag()?,
        };
        Ok(self.unix.insert(m))
    }

    fn inet_map(&mut self) -> Result<&HashMap<u32, InetDiag>> {
        let m = match self.inet.take() {
            Some(m) => m,
            None => inet_diag(self.net_ns.as_ref())?,
        };
        Ok(self.inet.insert(m))
    }

    fn packet_map(&mut self) -> Result<&HashMap<u32, sockdiag::PacketDiag>> {
        let m = match self.packet.take() {
            Some(m) => m,
            // A kernel without packet_diag lists none.
            None => match in_net(self.net_ns.as_ref(), sockdiag::packet_sockets) {
                Ok(m) => m,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => HashMap::new(),
                Err(source) => {
                    let what = "sock_diag: packet sockets";
                    return Err(DumpError::Call { what, source }.into());
                }
            },
        };
        Ok(self.packet.insert(m))
    }

    fn netlink_map(&mut self) -> &HashMap<u32, (u32, u32)> {
        let path = match self.net_pid {
            Some(p) => format!("/proc/{p}/net/netlink"),
            None => "/proc/net/netlink".to_string(),
        };
        self.netlink.get_or_insert_with(|| {
            // /proc/net/netlink: sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
            let mut m = HashMap::new();
            if let Ok(s) = std::fs::read_to_string(path) {
                for l in s.lines().skip(1) {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if f.len() >= 10 {
                        if let (Ok(proto), Ok(portid), Ok(ino)) =
                            (f[1].parse(), f[2].parse(), f[9].parse())
                        {
                            m.insert(ino, (proto, portid));
                        }
                    }
                }
            }
            m
        })
    }

    /// The descriptors crit's peeks received from queued messages
    /// (SCM_RIGHTS), and the socket whose queue each came from (pid, fd,
    /// inode of its holder).
    pub fn passed_fds(&self) -> Vec<(std::os::fd::RawFd, (i32, i32, u32))> {
        self.with_rights
            .iter()
            .flat_map(|q| {
                q.msgs
                    .iter()
                    .flat_map(move |m| m.rights.0.iter().map(move |&f| (f, (q.pid, q.fd, q.ino))))
            })
            .collect()
    }

    /// Whether `ino` is a socket sock_diag knows (unix or inet).
    pub fn known(&mut self, ino: u64) -> bool {
        let i = ino as u32;
        if ino > u32::MAX as u64 {
            return false;
        }
        self.unix_map().map(|m| m.contains_key(&i)).unwrap_or(false)
            || self.inet_map().map(|m| m.contains_key(&i)).unwrap_or(false)
    }

    /// The fdinfo type of socket `ino`, refusing unknown families.
    pub fn fd_type(&mut self, pid: i32, fd: i32, ino: u64) -> Result<i32> {
        let ino32 = ino as u32;
        if self.unix_map()?.contains_key(&ino32) {
            return Ok(FD_UNIXSK);
        }
        if self.inet_map()?.contains_key(&ino32) {
            return Ok(FD_INETSK);
        }
        // A protocol the restore cannot make is refused here.
        let netlink = |proto: u32| match crate::model::netlink::protocol(proto) {
            Some(_) => Ok(FD_NETLINKSK),
            None => Err(DumpError::NetlinkProtocol {
                pid,
                fd,
                ino,
                proto,
            }
            .into()),
        };
        if let Some(&(proto, _)) = self.netlink_map().get(&ino32) {
            return netlink(proto);
        }
        if let Some(d) = self.packet_map()?.get(&ino32) {
            if let Some(why) = super::packetsk::refusal(d) {
                return Err(DumpError::PacketSocket { pid, fd, ino, why }.into());
            }
            return Ok(FD_PACKETSK);
        }
        // An unbound netlink socket is in no list: ask the socket itself.
        if let Ok(copy) = crate::sys::pidfd::getfd(pid, fd) {
            let dom =
                sockopt::get_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN).unwrap_or(-1);
            if dom == libc::AF_NETLINK {
                let proto = sockopt::get_int(copy.as_fd(), libc::SOL_SOCKET, libc::SO_PROTOCOL)
                    .unwrap_or(0);
                if let Some(m) = self.netlink.as_mut() {
                    m.insert(ino32, (proto as u32, 0));
                }
                return netlink(proto as u32);
            }
            // Neither listening nor connected, a TCP or UDP socket is in
            // no list either (unbound, or bound only): it is closed.
            if let Some(d) = closed_inet(copy.as_fd(), dom, ino32, pid) {
                self.inet_map()?;
                if let Some(m) = self.inet.as_mut() {
                    m.insert(ino32, d);
                }
                return Ok(FD_INETSK);
            }
        }
        Err(DumpError::SocketFamily { pid, fd, ino }.into())
    }

    /// Records socket `ino`, held as `h`.
    pub fn dump_fd(
        &mut self,
        fr: &Frozen,
        h: HeldSocket,
        ino: u64,
        files: &mut FileTable,
        opts: &super::DumpOpts,
    ) -> Result<()> {
        let (pid, fd, id) = (h.pid, h.fd, h.id);
        self.count += 1;
        let ino32 = ino as u32;
        let copy = fr.getfd(pid, fd.fd)?;
        let mut fd = fd.clone();
        fd.fown = super::files::fown_of(pid, fd.fd, copy.as_fd())?;
        let fd = &fd;
        if let Some(d) = self.unix_map()?.get(&ino32).cloned() {
            return self.unix_fd(pid, fd, id, d, copy);
        }
        if let Some(d) = self.inet_map()?.get(&ino32).cloned() {
            let h = HeldSocket { pid, fd, id };
            return self.inet_fd(h, d, copy.as_fd(), files, opts);
        }
        if let Some(d) = self.packet_map()?.get(&ino32).cloned() {
            let so = sk_opts(pid, fd.fd, copy.as_fd(), false, None)?;
            let e = super::packetsk::entry(&d, id, fd.flags, fd.fown, so, self.net_ns_id);
            files.push(FD_PACKETSK, id, |f| f.psk = Some(e));
            return Ok(());
        }
        if let Some(&(proto, portid)) = self.netlink_map().get(&ino32) {
            let so = sk_opts(pid, fd.fd, copy.as_fd(), true, None)?;
            files.push(FD_NETLINKSK, id, |e| {
                e.nlsk = Some(pb::NetlinkSkEntry {
                    id,
                    ino: ino32,
                    protocol: proto,
                    state: TCP_CLOSE as u32,
                    flags: fd.flags,
                    portid,
                    groups: Vec::new(),
                    dst_portid: 0,
                    dst_group: 0,
                    fown: fd.fown,
                    opts: so,
                    ns_id: self.net_ns_id,
                })
            });
            return Ok(());
        }
        Err(DumpError::SocketVanished {
            pid,
            fd: fd.fd,
            ino,
        }
        .into())
    }

    fn inet_fd(
        &mut self,
        h: HeldSocket,
        d: InetDiag,
        copy: BorrowedFd,
        files: &mut FileTable,
        opts: &super::DumpOpts,
    ) -> Result<()> {
        let (pid, fd, id) = (h.pid, h.fd, h.id);
        // A raw socket of protocol TCP is no TCP socket.
        let sk_type = sockopt::get_int(copy, libc::SOL_SOCKET, libc::SO_TYPE)
            .map_err(|e| io(pid, fd.fd, "SO_TYPE", e))? as u32;
        let is_tcp = d.protocol == libc::IPPROTO_TCP as u8 && sk_type == libc::SOCK_STREAM as u32;
        // Connections waiting in a listener's accept queue belong to no
        // task yet: CRIU refuses them unless told to skip them (they are
        // then lost, reset when the tree goes).
        if is_tcp && d.state == TCP_LISTEN && d.rqueue != 0 && !opts.skip_in_flight {
            return Err(DumpError::InFlight {
                pid,
                fd: fd.fd,
                ino: d.ino,
                port: d.sport,
                count: d.rqueue,
            }
            .into());
        }
        // A corked UDP socket holds what it was given until uncorked;
        // CRIU's images have no room for either, and CRIU refuses it too.
        let udp = d.protocol == libc::IPPROTO_UDP as u8;
        const UDP_CORK: i32 = 1;
        if udp && sockopt::get_int(copy, libc::IPPROTO_UDP, UDP_CORK).unwrap_or(0) != 0 {
            return Err(DumpError::UdpCorked {
                pid,
                fd: fd.fd,
                ino: d.ino,
            }
            .into());
        }
        // A connection's state as read under the lock, in repair mode.
        let mut state = u32::from(d.state);
        if is_tcp && d.state != TCP_LISTEN && d.state != TCP_CLOSE && !opts.tcp_close {
            if !opts.tcp_established {
                return Err(DumpError::TcpEstablished {
                    pid,
                    fd: fd.fd,
                    ino: d.ino,
                    sport: d.sport,
                    dport: d.dport,
                    state: d.state,
                }
                .into());
            }
            state = self.tcp_stream(pid, fd.fd, &d, copy)?;
        }
        // A connected UDP socket keeps its peer address (state
        // ESTABLISHED, as CRIU records it); datagrams queued for it are not
        // dumped (CRIU does not either).
        let so = sk_opts(pid, fd.fd, copy, false, None)?;
        let v4 = d.family == libc::AF_INET as u8;
        let addr = |a: [u32; 4]| if v4 { vec![a[0]] } else { a.to_vec() };
        let backlog = if d.state == TCP_LISTEN { d.wqueue } else { 0 };
        let v6only = if v4 {
            None
        } else {
            Some(
                sockopt::get_int(copy, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
                    .map_err(|e| io(pid, fd.fd, "IPV6_V6ONLY", e))?
                    != 0,
            )
        };
        let ip_opts = ip_opts(copy, v4, sk_type as i32, u32::from(d.protocol));
        let tcp_opts = if is_tcp {
            let t = |o: i32| {
                sockopt::get_int(copy, libc::IPPROTO_TCP, o)
                    .ok()
                    .map(|v| v as u32)
            };
            // As CRIU: a flag only when set.
            let on = |o: i32| t(o).filter(|&v| v != 0).map(|_| true);
            Some(pb::TcpOptsEntry {
                nodelay: on(libc::TCP_NODELAY),
                cork: on(libc::TCP_CORK),
                keepcnt: t(libc::TCP_KEEPCNT),
                keepidle: t(libc::TCP_KEEPIDLE),
                keepintvl: t(libc::TCP_KEEPINTVL),
            })
        } else {
            Some(pb::TcpOptsEntry::default())
        };
        files.push(FD_INETSK, id, |e| {
            e.isk = Some(pb::InetSkEntry {
                id,
                ino: d.ino,
                family: d.family as u32,
                r#type: sk_type,
                proto: d.protocol as u32,
                state,
                src_port: d.sport as u32,
                dst_port: d.dport as u32,
                flags: fd.flags,
                backlog,
                src_addr: addr(d.src),
                dst_addr: addr(d.dst),
                fown: fd.fown,
                opts: so,
                v6only,
                ip_opts: Some(ip_opts),
                ifname: None,
                ns_id: self.net_ns_id,
                shutdown: None,
                tcp_opts,
            })
        });
        Ok(())
    }

    /// Puts an established connection in repair mode and reads its state
    /// (see [`super::tcp`]), locked: by its own rules when the tree shares
    /// crit's network namespace, with the whole namespace otherwise.
    /// Returns the connection's state.
    fn tcp_stream(&mut self, pid: i32, fd: i32, d: &InetDiag, copy: BorrowedFd) -> Result<u32> {
        let words = |a: [u32; 4]| {
            if d.family == libc::AF_INET as u8 {
                vec![a[0]]
            } else {
                a.to_vec()
            }
        };
        let fam = u32::from(d.family);
        let (Some(src), Some(dst)) = (
            crate::model::netlock::addr_of(fam, &words(d.src)),
            crate::model::netlock::addr_of(fam, &words(d.dst)),
        ) else {
            return Err(DumpError::SocketFamily {
                pid,
                fd,
                ino: u64::from(d.ino),
            }
            .into());
        };
        let conn = crate::model::netlock::Conn {
            src,
            sport: d.sport,
            dst,
            dport: d.dport,
        };
        let sock = copy
            .try_clone_to_owned()
            .map_err(|e| io(pid, fd, "dup", e))?;
        let repair = self
            .repair
            .get_or_insert_with(|| {
                let lock = crate::model::netlock::Lock::new(
                    crate::model::netlock::Method::Iptables,
                    &super::write::run_id(),
                );
                std::sync::Arc::new(super::tcp::TcpRepair::new(lock))
            })
            .clone();
        if let Some(net) = &self.net_ns {
            repair.lock_ns(net).map_err(|source| DumpError::NetLock {
                pid,
                fd,
                ino: d.ino,
                source,
            })?;
        }
        let stream = repair.dump(sock, conn, self.net_ns.is_none(), pid, fd, d.ino)?;
        let state = stream.state;
        self.streams.push(stream);
        Ok(state)
    }

    fn unix_fd(&mut self, pid: i32, fd: &Fd, id: u32, d: UnixDiag, copy: OwnedFd) -> Result<()> {
        let so = sk_opts(pid, fd.fd, copy.as_fd(), true, d.bufs)?;
        let (mut name_dir, mut deleted, mut file_perms) = (None, false, None);
        if let Some(name) = &d.name {
            if !name.is_empty() && name[0] != 0 {
                let path = String::from_utf8_lossy(name.split(|&b| b == 0).next().unwrap_or(&[]))
                    .into_owned();
                let full = if path.starts_with('/') {
                    path.clone()
                } else {
                    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
                        .map_err(|e| io(pid, fd.fd, "readlink cwd", e))?
                        .to_string_lossy()
                        .into_owned();
                    name_dir = Some(cwd.clone());
                    format!("{cwd}/{path}")
                };
                use std::os::unix::fs::MetadataExt;
                // The name is a path of the task's root (and mount
                // namespace), reached through /proc.
                let seen = format!("/proc/{pid}/root{full}");
                match (std::fs::symlink_metadata(&seen), d.vfs) {
                    (Ok(m), Some((_, vino))) if m.ino() == vino as u64 => {
                        file_perms = Some(pb::FilePermsEntry {
                            mode: m.mode(),
                            uid: m.uid(),
                            gid: m.gid(),
                        });
                    }
                    (_, Some(_)) => {
                        deleted = true;
                        file_perms = Some(pb::FilePermsEntry {
                            mode: 0o140755,
                            uid: 0,
                            gid: 0,
                        });
                    }
                    _ => {}
                }
            }
        }
        let queued = d.rqlen.is_some_and(|r| r.0 > 0);
        if d.state != TCP_LISTEN && queued && so.so_passcred == Some(true) {
            // Each message carries who sent it; crit's replay cannot
            // send in the senders' names, which the receiver would read.
            let (fd, ino) = (fd.fd, d.ino);
            return Err(DumpError::PassCredQueue { pid, fd, ino }.into());
        }
        if d.state != TCP_LISTEN {
            self.read_queue(QueueOf {
                pid,
                fd: fd.fd,
                id,
                d: &d,
                sk: copy.as_fd(),
            })?;
        }
        self.pending.push(UnixSk {
            pid,
            fd: fd.fd,
            id,
            flags: fd.flags,
            diag: d,
            opts: so,
            name_dir,
            deleted,
            file_perms,
            fown: fd.fown,
        });
        Ok(())
    }

    /// Copies the receive queue of a unix socket into sk-queues, message by
    /// message, without consuming it.
    fn read_queue(&mut self, q: QueueOf) -> Result<()> {
        let (pid, fd, d, sk) = (q.pid, q.fd, q.d, q.sk);
        let queued = d.rqlen.map(|r| r.0).unwrap_or(0);
        if queued == 0 {
            return Ok(());
        }
        let old = sockopt::get_int(sk, libc::SOL_SOCKET, libc::SO_PEEK_OFF)
            .map_err(|e| io(pid, fd, "SO_PEEK_OFF", e))?;
        // A stream queue usually comes whole in one peek from its start:
        // then the peek offset need not be touched at all.
        if d.sk_type == SOCK_STREAM && old < 0 && self.peek_all(q, true)? {
            return Ok(());
        }
        sockopt::set_int(sk, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0)
            .map_err(|e| io(pid, fd, "SO_PEEK_OFF", e))?;
        let r = self.peek_all(q, false);
        let back = sockopt::set_int(sk, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old);
        r?;
        back.map_err(|e| io(pid, fd, "restore SO_PEEK_OFF", e))
    }

    /// Peeks the queue into sk-queues. `single`: one peek only, kept
    /// only if it got every queued byte (returns whether it did).
    fn peek_all(&mut self, q: QueueOf, single: bool) -> Result<bool> {
        let want = (q.d.rqlen.map(|r| r.0).unwrap_or(0) as usize).max(1 << 20);
        let mut buf = std::mem::take(&mut self.peek_buf);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let r = self.peek_into(q, &mut buf, single);
        self.peek_buf = buf;
        r
    }

    fn peek_into(&mut self, q: QueueOf, buf: &mut [u8], single: bool) -> Result<bool> {
        let mut msgs = Vec::new();
        let whole = Self::peek_msgs(q, buf, single, &mut msgs)?;
        if !whole {
            return Ok(false);
        }
        if msgs.iter().any(|m| !m.rights.0.is_empty()) {
            self.with_rights.push(HeldQueue {
                pid: q.pid,
                fd: q.fd,
                ino: q.d.ino,
                msgs,
            });
            return Ok(true);
        }
        for m in msgs {
            self.queue_builder()?.entry(&m.entry).raw(&m.data);
        }
        Ok(true)
    }

    fn queue_builder(&mut self) -> Result<&mut ImageBuilder> {
        let b = match self.queues.take() {
            Some(b) => b,
            None => ImageBuilder::new("SK_QUEUES")?,
        };
        Ok(self.queues.insert(b))
    }

    /// Peeks every queued message into `out`; false if `single` and one
    /// peek did not get the whole queue.
    fn peek_msgs(q: QueueOf, buf: &mut [u8], single: bool, out: &mut Vec<Peeked>) -> Result<bool> {
        let (pid, fd, id, d, sk) = (q.pid, q.fd, q.id, q.d, q.sk);
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
        use std::os::fd::AsRawFd;
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 253]);
        // For stream and seqpacket sockets sock_diag gave the queued bytes:
        // stop once they are all read (saves a last EAGAIN round).
        let queued = d.rqlen.map(|r| r.0 as usize).unwrap_or(0);
        let mut total = 0usize;
        loop {
            if d.sk_type != SOCK_DGRAM && queued > 0 && total >= queued {
                return Ok(true);
            }
            let mut iov = [std::io::IoSliceMut::new(&mut *buf)];
            let r = recvmsg::<UnixAddr>(
                sk.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
            );
            let msg = match r {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN) => return Ok(!single),
                Err(e) => return Err(io(pid, fd, "peek queued data", e)),
            };
            let n = msg.bytes;
            let mut rights = Rights::default();
            if let Ok(cms) = msg.cmsgs() {
                for c in cms {
                    if let ControlMessageOwned::ScmRights(fds) = c {
                        rights.0.extend(fds);
                    }
                }
            }
            if msg.flags.contains(MsgFlags::MSG_CTRUNC) {
                return Err(DumpError::QueueTooManyFiles {
                    pid,
                    fd,
                    ino: d.ino,
                }
                .into());
            }
            if msg.flags.contains(MsgFlags::MSG_TRUNC) {
                return Err(DumpError::QueueMessageTooBig {
                    pid,
                    fd,
                    ino: d.ino,
                    size: buf.len(),
                }
                .into());
            }
            if n == 0 {
                // End of a stream or seqpacket queue whose peer shut down
                // writing (recv says 0 instead of EAGAIN).
                let rcv_shut = d.shutdown.unwrap_or(0) & 1 != 0;
                if d.sk_type != SOCK_DGRAM || rcv_shut {
                    return Ok(!single);
                }
                return Err(DumpError::EmptyDatagram {
                    pid,
                    fd,
                    ino: d.ino,
                }
                .into());
            }
            if single && n != queued {
                return Ok(false);
            }
            out.push(Peeked {
                entry: pb::SkPacketEntry {
                    id_for: id,
                    length: n as u32,
                    scm: Vec::new(),
                },
                data: buf[..n].to_vec(),
                rights,
            });
            total += n;
        }
    }

    /// Takes the data of connections still pending in a listener, as the
    /// very last step before the tree is killed: the connections are
    /// accepted through a copy of the listener (so they leave the tree's
    /// backlog) and their queues read into sk-queues. Nothing else is left
    /// to fail but writing the last images.
    pub fn drain_pending(&mut self) -> Result<()> {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let drains = std::mem::take(&mut self.drains);
        let mut listeners: Vec<(i32, i32, u32)> = drains
            .iter()
            .map(|d| (d.listener.0, d.listener.1, d.listener_ino))
            .collect();
        listeners.sort_unstable();
        listeners.dedup();
        let mut taken = Vec::new();
        for (pid, fd, ino) in listeners {
            let err = |what, source| DumpError::Listener {
                pid,
                fd,
                ino,
                what,
                source,
            };
            let l = crate::sys::pidfd::getfd(pid, fd).map_err(|e| err("take a copy", e))?;
            while let Some(a) =
                crate::sys::sock::accept_wait(l.as_raw_fd(), std::time::Duration::ZERO)
                    .map_err(|e| err("accept", e))?
            {
                taken.push(a);
            }
        }
        if taken.is_empty() {
            // Nothing pending: no need to list the socket table again
            // (18,000 sockets: 14 ms).
            return Ok(());
        }
        // Which client each accepted end belongs to.
        let diag = self.unix_diag()?;
        let mut buf = vec![0u8; 1 << 20];
        for a in &taken {
            let ino =
                crate::sys::sock::inode_of(a.as_raw_fd()).map_err(|source| DumpError::Call {
                    what: "accepted pending connection",
                    source,
                })?;
            let client = diag.get(&(ino as u32)).and_then(|d| d.peer).unwrap_or(0);
            let Some(d) = drains.iter().find(|d| d.client_ino == client) else {
                continue;
            };
            loop {
                let n = match recv(a.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
                    Ok(0) | Err(nix::errno::Errno::EAGAIN) => break,
                    Ok(n) => n,
                    Err(e) => {
                        return Err(DumpError::PendingRead {
                            ino: client,
                            source: e.into(),
                        }
                        .into())
                    }
                };
                self.queue_builder()?
                    .entry(&pb::SkPacketEntry {
                        id_for: d.id,
                        length: n as u32,
                        scm: Vec::new(),
                    })
                    .raw(&buf[..n]);
            }
        }
        Ok(())
    }

    /// Writes the queues held back for the files their messages passed,
    /// now that every descriptor of the tree has an id: each passed file
    /// must be one a task holds (CRIU writes files only in flight as
    /// entries of their own; crit refuses them).
    fn write_held_queues(&mut self, files: &FileTable) -> Result<()> {
        for q in std::mem::take(&mut self.with_rights) {
            for mut m in q.msgs {
                let mut ids = Vec::with_capacity(m.rights.0.len());
                for &f in &m.rights.0 {
                    let id = files.held_id(f)?.ok_or_else(|| {
                        let file = std::fs::read_link(format!("/proc/self/fd/{f}"))
                            .map(|p| p.display().to_string())
                            .unwrap_or_default();
                        DumpError::FileInFlight {
                            pid: q.pid,
                            fd: q.fd,
                            ino: q.ino,
                            file,
                        }
                    })?;
                    ids.push(id);
                }
                if !ids.is_empty() {
                    // type 1: SCM_RIGHTS
                    m.entry.scm.push(pb::ScmEntry {
                        r#type: 1,
                        rights: ids,
                    });
                }
                self.queue_builder()?.entry(&m.entry).raw(&m.data);
                self.passed.push(std::mem::take(&mut m.rights));
            }
        }
        Ok(())
    }

    /// Writes the unix socket entries once every descriptor of the tree is
    /// known: peers outside the tree become external entries (with
    /// consent) or a refusal naming every such socket.
    /// `kill`: the tree is killed after the dump (no `-R`); only then can
    /// the data of a connection still pending in a listener be taken.
    pub fn finish(
        &mut self,
        files: &mut FileTable,
        ext: &super::ExtUnix,
        kill: bool,
    ) -> Result<()> {
        self.write_held_queues(files)?;
        let pending_in = self.pending_clients()?;
        let in_tree: HashSet<u32> = self.pending.iter().map(|s| s.diag.ino).collect();
        let mut ext_entries: HashMap<u32, u32> = HashMap::new();
        let pending = std::mem::take(&mut self.pending);
        let mut refused: Vec<OutsidePeer> = Vec::new();
        for s in &pending {
            let mut peer = s.diag.peer.unwrap_or(0);
            if let Some(&l) = pending_in.get(&s.diag.ino) {
                self.pending_connection(s, l, &pending, files, kill)?;
                peer = l;
            } else if peer == 0 && s.diag.state == 1 && s.diag.sk_type != SOCK_DGRAM {
                // Connected to an embryo of a listener outside the tree.
                return Err(DumpError::UnacceptedOutside {
                    pid: s.pid,
                    fd: s.fd,
                    ino: s.diag.ino,
                }
                .into());
            }
            if peer != 0 && !in_tree.contains(&peer) {
                if !(ext.allows(s.diag.ino as u64) || ext.allows(peer as u64)) {
                    refused.push(self.outside(s, peer));
                    continue;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = ext_entries.entry(peer) {
                    slot.insert(self.external(peer, files));
                }
            }
            let e = self.entry(s, peer);
            files.push(FD_UNIXSK, s.id, |f| f.usk = Some(e));
        }
        if !refused.is_empty() {
            let peers = OutsidePeers(refused);
            return Err(DumpError::OutsidePeers { peers }.into());
        }
        Ok(())
    }

    /// Clients whose connection waits in a listener's accept queue, with
    /// that listener: ICONS lists the client ends; their peer (the
    /// unaccepted embryo) has no inode, and CRIU records the listener as
    /// their peer.
    fn pending_clients(&self) -> Result<HashMap<u32, u32>> {
        let mut pending_in = HashMap::new();
        for s in &self.pending {
            for &c in &s.diag.icons {
                if c == 0 {
                    // As CRIU: the client has closed, so whether it sent
                    // data cannot be known.
                    return Err(DumpError::PendingClientClosed {
                        pid: s.pid,
                        fd: s.fd,
                        ino: s.diag.ino,
                    }
                    .into());
                }
                pending_in.insert(c, s.diag.ino);
            }
        }
        Ok(pending_in)
    }

    /// A client `s` pending in listener `l`: when it has sent data, its
    /// unaccepted end is written as an entry of its own (peer = the client,
    /// the listener's name), to be drained last; refused with -R.
    fn pending_connection(
        &mut self,
        s: &UnixSk,
        l: u32,
        all: &[UnixSk],
        files: &mut FileTable,
        kill: bool,
    ) -> Result<()> {
        let unread = s.diag.rqlen.map(|r| r.1).unwrap_or(0);
        if unread == 0 {
            return Ok(());
        }
        if !kill {
            return Err(DumpError::PendingDataLeaveRunning {
                pid: s.pid,
                fd: s.fd,
                ino: s.diag.ino,
                listener: l,
            }
            .into());
        }
        let lsk = all
            .iter()
            .find(|x| x.diag.ino == l)
            .ok_or(DumpError::ListenerNotInTree { ino: l })?;
        // An inode number no socket of the system has.
        let map = self.unix.as_ref();
        let mut ino = u32::MAX;
        while map.is_some_and(|m| m.contains_key(&ino)) || self.drains.iter().any(|d| d.ino == ino)
        {
            ino -= 1;
        }
        let id = files.new_id();
        let e = pb::UnixSkEntry {
            id,
            ino,
            r#type: s.diag.sk_type as u32,
            state: 1, // established
            flags: 2, // O_RDWR
            uflags: 0,
            backlog: 0,
            peer: s.diag.ino,
            fown: fown(),
            opts: lsk.opts.clone(),
            name: lsk.diag.name.clone().unwrap_or_default(),
            name_dir: lsk.name_dir.clone(),
            ns_id: self.net_ns_id,
            ..Default::default()
        };
        files.push(FD_UNIXSK, id, |f| f.usk = Some(e));
        self.drains.push(Drain {
            listener: (lsk.pid, lsk.fd),
            listener_ino: l,
            client_ino: s.diag.ino,
            id,
            ino,
        });
        Ok(())
    }

    /// The entry standing for outside socket `peer`, as CRIU writes an
    /// outside peer (a dgram entry); returns its file id.
    fn external(&self, peer: u32, files: &mut FileTable) -> u32 {
        let eid = files.new_id();
        let name = self
            .unix
            .as_ref()
            .and_then(|m| m.get(&peer))
            .and_then(|p| p.name.clone())
            .unwrap_or_default();
        let ext = external_entry(eid, peer, SOCK_DGRAM.into(), name, None, None);
        files.push(FD_UNIXSK, eid, |e| e.usk = Some(ext));
        eid
    }

    /// What a refusal says of `s`, connected to outside socket `peer`:
    /// the peer's address and who holds it.
    fn outside(&self, s: &UnixSk, peer: u32) -> OutsidePeer {
        OutsidePeer {
            pid: s.pid,
            fd: s.fd,
            sk_type: s.diag.sk_type,
            ino: s.diag.ino,
            peer,
            name: self
                .unix
                .as_ref()
                .and_then(|m| m.get(&peer))
                .and_then(|p| p.name.clone()),
            holder: find_holder(peer),
        }
    }

    /// The entry of in-tree socket `s`, whose peer is `peer`.
    fn entry(&self, s: &UnixSk, peer: u32) -> pb::UnixSkEntry {
        pb::UnixSkEntry {
            id: s.id,
            ino: s.diag.ino,
            r#type: s.diag.sk_type as u32,
            state: s.diag.state as u32,
            flags: s.flags,
            uflags: 0,
            backlog: s.diag.rqlen.map(|r| r.1).unwrap_or(0),
            peer,
            fown: s.fown,
            opts: s.opts.clone(),
            name: s.diag.name.clone().unwrap_or_default(),
            shutdown: s.diag.shutdown.filter(|&v| v != 0).map(|v| v as i32),
            file_perms: s.file_perms,
            name_dir: s.name_dir.clone(),
            deleted: if s.deleted { Some(true) } else { None },
            ns_id: self.net_ns_id,
            mnt_id: None,
        }
    }
}

/// Closes a descriptor the kernel installed in our table when a peek
/// carried SCM_RIGHTS.
fn close_installed(fd: std::os::fd::RawFd) {
    let _ = nix::unistd::close(fd);
}

/// Which process holds socket `ino` (for error messages).
fn find_holder(ino: u32) -> Option<(i32, i32)> {
    let want = format!("socket:[{ino}]");
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for f in fds.flatten() {
            if std::fs::read_link(f.path())
                .map(|l| l.to_string_lossy() == want)
                .unwrap_or(false)
            {
                let fd = f.file_name().to_string_lossy().parse().unwrap_or(-1);
                return Some((pid, fd));
            }
        }
    }
    None
}

/// Socket options as CRIU records them (criu/sockets.c dump_socket_opts);
/// `bufs`: the (receive, send) buffer sizes, if sock_diag gave them (two
/// calls fewer).
/// The IP options CRIU 4.2 records, each only when not zero, as it
/// does: IP_FREEBIND, IP_PKTINFO, IP_TOS and IP_TTL for IPv4;
/// IPV6_FREEBIND and IPV6_RECVPKTINFO for IPv6.
/// A raw socket's also get `raw`: IP_HDRINCL, IP_NODEFRAG and an ICMP
/// socket's ICMP_FILTER (IPV6_HDRINCL and ICMPV6_FILTER for IPv6).
fn ip_opts(s: BorrowedFd, v4: bool, ty: i32, proto: u32) -> pb::IpOptsEntry {
    let get = |level, name| {
        sockopt::get_int(s, level, name)
            .ok()
            .filter(|&v| v != 0)
            .map(|v| v as u32)
    };
    let flag = |level, name| get(level, name).map(|_| true);
    let filter = |level, name, words: usize| -> Vec<u32> {
        let b = sockopt::get_bytes(s, level, name).unwrap_or_default();
        b.chunks_exact(4)
            .take(words)
            .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    use sockopt::{ICMP_FILTER, IPV6_HDRINCL, SOL_ICMPV6, SOL_RAW};
    let raw = (ty == libc::SOCK_RAW).then(|| match v4 {
        true => pb::IpOptsRawEntry {
            hdrincl: flag(libc::IPPROTO_IP, libc::IP_HDRINCL),
            nodefrag: flag(libc::IPPROTO_IP, libc::IP_NODEFRAG),
            icmpv_filter: match proto == libc::IPPROTO_ICMP as u32 {
                true => filter(SOL_RAW, ICMP_FILTER, 1),
                false => Vec::new(),
            },
            ..Default::default()
        },
        false => pb::IpOptsRawEntry {
            hdrincl: flag(libc::IPPROTO_IPV6, IPV6_HDRINCL),
            icmpv_filter: match proto == libc::IPPROTO_ICMPV6 as u32 {
                true => filter(SOL_ICMPV6, ICMP_FILTER, 8),
                false => Vec::new(),
            },
            ..Default::default()
        },
    });
    if v4 {
        pb::IpOptsEntry {
            freebind: flag(libc::IPPROTO_IP, libc::IP_FREEBIND),
            pktinfo: flag(libc::IPPROTO_IP, libc::IP_PKTINFO),
            tos: get(libc::IPPROTO_IP, libc::IP_TOS),
            ttl: get(libc::IPPROTO_IP, libc::IP_TTL),
            raw,
        }
    } else {
        pb::IpOptsEntry {
            freebind: flag(libc::IPPROTO_IPV6, libc::IPV6_FREEBIND),
            pktinfo: flag(libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
            raw,
            ..Default::default()
        }
    }
}

fn sk_opts(
    pid: i32,
    fd: i32,
    sk: BorrowedFd,
    unix_or_netlink: bool,
    bufs: Option<(u32, u32)>,
) -> Result<pb::SkOptsEntry> {
    let g = |name: i32| {
        sockopt::get_int(sk, libc::SOL_SOCKET, name).map_err(|e| io(pid, fd, "getsockopt", e))
    };
    let (so_rcvbuf, so_sndbuf) = match bufs {
        Some(b) => b,
        None => (g(libc::SO_RCVBUF)? as u32, g(libc::SO_SNDBUF)? as u32),
    };
    let (ss, su) = sockopt::get_timeval(sk, libc::SOL_SOCKET, libc::SO_SNDTIMEO)
        .map_err(|e| io(pid, fd, "SO_SNDTIMEO", e))?;
    let (rs, ru) = sockopt::get_timeval(sk, libc::SOL_SOCKET, libc::SO_RCVTIMEO)
        .map_err(|e| io(pid, fd, "SO_RCVTIMEO", e))?;
    let mark = g(libc::SO_MARK)? as u32;
    let linger = sockopt::get_bytes(sk, libc::SOL_SOCKET, libc::SO_LINGER).unwrap_or_default();
    let l_on = linger
        .get(0..4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    let l_val = linger
        .get(4..8)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .unwrap_or(0);
    // A unix socket cannot be bound to a device: no need to ask.
    let bound = if unix_or_netlink {
        Vec::new()
    } else {
        sockopt::get_bytes(sk, libc::SOL_SOCKET, libc::SO_BINDTODEVICE).unwrap_or_default()
    };
    let bound =
        String::from_utf8_lossy(bound.split(|&b| b == 0).next().unwrap_or(&[])).into_owned();
    Ok(pb::SkOptsEntry {
        so_sndbuf,
        so_rcvbuf,
        so_snd_tmo_sec: ss,
        so_snd_tmo_usec: su,
        so_rcv_tmo_sec: rs,
        so_rcv_tmo_usec: ru,
        reuseaddr: Some(g(libc::SO_REUSEADDR)? != 0),
        so_priority: Some(g(libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(g(libc::SO_RCVLOWAT)? as u32),
        so_mark: if mark != 0 { Some(mark) } else { None },
        so_passcred: if unix_or_netlink {
            Some(g(libc::SO_PASSCRED)? != 0)
        } else {
            None
        },
        so_passsec: if unix_or_netlink {
            Some(g(libc::SO_PASSSEC)? != 0)
        } else {
            None
        },
        so_dontroute: Some(g(libc::SO_DONTROUTE)? != 0),
        so_no_check: Some(g(libc::SO_NO_CHECK)? != 0),
        so_bound_dev: if bound.is_empty() { None } else { Some(bound) },
        so_filter: sockopt::get_filter(sk)
            .map_err(|e| match e.raw_os_error() {
                // The kernel keeps no classic form of an eBPF program.
                Some(libc::EACCES) => DumpError::BpfFilter { pid, fd }.into(),
                _ => io(pid, fd, "SO_GET_FILTER", e),
            })?
            .iter()
            .map(crate::model::sockfilter::pack)
            .collect(),
        so_reuseport: Some(g(libc::SO_REUSEPORT)? != 0),
        so_broadcast: Some(g(libc::SO_BROADCAST)? != 0),
        so_keepalive: Some(g(libc::SO_KEEPALIVE)? != 0),
        tcp_keepcnt: None,
        tcp_keepidle: None,
        tcp_keepintvl: None,
        so_oobinline: Some(g(libc::SO_OOBINLINE)? as u32),
        so_linger: if l_on != 0 { Some(l_val as u32) } else { None },
        so_buf_lock: Some(sockopt::get_int(sk, libc::SOL_SOCKET, 72).unwrap_or(0) as u32),
    })
}

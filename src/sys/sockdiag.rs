//! NETLINK_SOCK_DIAG: every unix socket of the network namespace with its
//! name, inode of its file, peer, pending connections, queue lengths and
//! shutdown state in one dump; and inet (TCP/UDP) sockets with their
//! addresses and states; and the TCP sockets on a port, of which
//! `SOCK_DESTROY` can end those in TIME_WAIT; and packet sockets with
//! their binding, options, memberships and fanout. Safe code over a
//! netlink socket.

use nix::sys::socket::{
    recv, sendto, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use std::collections::HashMap;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const TCP_TIME_WAIT: u32 = 6;
const INET_DIAG_SKV6ONLY: u16 = 11;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;

const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_MEMINFO: u16 = 5;
const UNIX_DIAG_SHUTDOWN: u16 = 6;

/// One unix socket as sock_diag reports it.
#[derive(Debug, Clone, Default)]
pub struct UnixDiag {
    pub ino: u32,
    pub sk_type: u8,
    pub state: u8,
    /// Bound address: a path, or an abstract name starting with NUL.
    pub name: Option<Vec<u8>>,
    /// (device, inode) of the socket file a path name is bound to; the
    /// device in the kernel's encoding (see [`stat_dev`]).
    pub vfs: Option<(u32, u32)>,
    pub peer: Option<u32>,
    /// Inodes of connections waiting in a listener's accept queue.
    pub icons: Vec<u32>,
    /// For a listener: (pending connections, backlog); else (bytes or
    /// messages queued for reading, bytes being written).
    pub rqlen: Option<(u32, u32)>,
    pub shutdown: Option<u8>,
    /// (receive, send) buffer sizes: what SO_RCVBUF and SO_SNDBUF say.
    pub bufs: Option<(u32, u32)>,
}

/// One TCP/UDP socket.
#[derive(Debug, Clone, Default)]
pub struct InetDiag {
    pub family: u8,
    pub protocol: u8,
    pub state: u8,
    pub sport: u16,
    pub dport: u16,
    pub src: [u32; 4],
    pub dst: [u32; 4],
    pub ino: u32,
    pub rqueue: u32,
    pub wqueue: u32,
}

fn request(ty: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
    let len = 16 + payload.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_le_bytes());
    m.extend_from_slice(&ty.to_le_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_le_bytes());
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(payload);
    m
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .unwrap_or(0)
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .unwrap_or(0)
}

/// Sends a dump request and calls `each` with the payload of every answer.
fn dump(payload: &[u8], each: impl FnMut(&[u8])) -> std::io::Result<()> {
    exchange(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, payload, each)
}

/// Sends one request and reads the answers up to NLMSG_DONE or, for a
/// request acknowledged, its NLMSG_ERROR (errno 0 on success).
fn exchange(
    ty: u16,
    flags: u16,
    payload: &[u8],
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    use std::os::fd::AsRawFd;
    let req = request(ty, flags, payload);
    sendto(
        fd.as_raw_fd(),
        &req,
        &NetlinkAddr::new(0, 0),
        MsgFlags::empty(),
    )?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Ok(());
        }
        let mut off = 0;
        while off + 16 <= n {
            let len = u32_at(&buf, off) as usize;
            let ty = u16_at(&buf, off + 4);
            if len < 16 || off + len > n {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "bad netlink message",
                ));
            }
            match ty {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let err = u32_at(&buf, off + 16) as i32;
                    if err != 0 {
                        return Err(std::io::Error::from_raw_os_error(-err));
                    }
                    if flags & NLM_F_ACK != 0 {
                        return Ok(());
                    }
                }
                _ => each(&buf[off + 16..off + len]),
            }
            off += (len + 3) & !3;
        }
    }
}

fn attrs(b: &[u8], mut f: impl FnMut(u16, &[u8])) {
    let mut off = 0;
    while off + 4 <= b.len() {
        let len = u16_at(b, off) as usize;
        let ty = u16_at(b, off + 2) & 0x3fff;
        if len < 4 || off + len > b.len() {
            return;
        }
        f(ty, &b[off + 4..off + len]);
        off += (len + 3) & !3;
    }
}

/// Every unix socket of the caller's network namespace, by inode.
pub fn unix_sockets() -> std::io::Result<HashMap<u32, UnixDiag>> {
    let mut p = Vec::new();
    p.push(nix::libc::AF_UNIX as u8);
    p.push(0);
    p.extend_from_slice(&0u16.to_le_bytes());
    p.extend_from_slice(&u32::MAX.to_le_bytes()); // all states
    p.extend_from_slice(&0u32.to_le_bytes()); // ino
    p.extend_from_slice(&(1u32 | 2 | 4 | 8 | 0x10 | 0x20).to_le_bytes()); // NAME VFS PEER ICONS RQLEN MEMINFO
    p.extend_from_slice(&[0xff; 8]); // cookie: none
    let mut out = HashMap::new();
    dump(&p, |m| {
        if m.len() < 16 {
            return;
        }
        let mut d = UnixDiag {
            sk_type: m[1],
            state: m[2],
            ino: u32_at(m, 4),
            ..Default::default()
        };
        attrs(&m[16..], |ty, v| match ty {
            UNIX_DIAG_NAME => d.name = Some(v.to_vec()),
            UNIX_DIAG_VFS => d.vfs = Some((u32_at(v, 4), u32_at(v, 0))),
            UNIX_DIAG_PEER => d.peer = Some(u32_at(v, 0)),
            UNIX_DIAG_ICONS => {
                d.icons = v
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            UNIX_DIAG_RQLEN => d.rqlen = Some((u32_at(v, 0), u32_at(v, 4))),
            UNIX_DIAG_SHUTDOWN => d.shutdown = v.first().copied(),
            // SK_MEMINFO_RCVBUF and SK_MEMINFO_SNDBUF.
            UNIX_DIAG_MEMINFO if v.len() >= 16 => d.bufs = Some((u32_at(v, 4), u32_at(v, 12))),
            _ => {}
        });
        out.insert(d.ino, d);
    })?;
    Ok(out)
}

/// Every socket of one inet family and protocol (IPPROTO_TCP, _UDP), by inode.
pub fn inet_sockets(family: u8, protocol: u8) -> std::io::Result<HashMap<u32, InetDiag>> {
    let mut p = vec![family, protocol, 0, 0];
    p.extend_from_slice(&u32::MAX.to_le_bytes()); // all states
    p.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: match all
    let mut out = HashMap::new();
    dump(&p, |m| {
        if m.len() < 72 {
            return;
        }
        let be16 = |o: usize| u16::from_be_bytes([m[o], m[o + 1]]);
        let mut d = InetDiag {
            family: m[0],
            protocol,
            state: m[1],
            sport: be16(4),
            dport: be16(6),
            ..Default::default()
        };
        for i in 0..4 {
            d.src[i] = u32_at(m, 8 + 4 * i);
            d.dst[i] = u32_at(m, 24 + 4 * i);
        }
        d.rqueue = u32_at(m, 56);
        d.wqueue = u32_at(m, 60);
        d.ino = u32_at(m, 68);
        out.insert(d.ino, d);
    })?;
    Ok(out)
}

/// One multicast (or promiscuous, all-multicast) membership of a packet
/// socket (`packet_diag_mclist`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketMc {
    pub index: u32,
    /// How many times it was added.
    pub count: u32,
    pub ty: u16,
    pub addr: Vec<u8>,
}

/// One AF_PACKET socket (`packet_diag_msg` and its attributes).
#[derive(Debug, Clone, Default)]
pub struct PacketDiag {
    pub ino: u32,
    pub sk_type: u8,
    /// The protocol, in host order (ETH_P_ALL is 3).
    pub proto: u16,
    /// `packet_diag_info`: ifindex, version, reserve, copy threshold,
    /// timestamp source, PDI_* flags.
    pub index: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    pub mclist: Vec<PacketMc>,
    /// PACKET_FANOUT's value (group id, type and flags), if in a group.
    pub fanout: Option<u32>,
    /// Whether it has an mmap'ed receive or transmit ring.
    pub ring: bool,
}

/// `packet_diag_info` flags.
pub const PDI_AUXDATA: u32 = 0x2;
pub const PDI_ORIGDEV: u32 = 0x4;
pub const PDI_VNETHDR: u32 = 0x8;
pub const PDI_LOSS: u32 = 0x10;

/// Every packet socket of the caller's network namespace, by inode.
pub fn packet_sockets() -> std::io::Result<HashMap<u32, PacketDiag>> {
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8; // info, mclist, rings, fanout
    let mut p = vec![nix::libc::AF_PACKET as u8, 0, 0, 0];
    p.extend_from_slice(&0u32.to_le_bytes()); // any inode
    p.extend_from_slice(&SHOW.to_le_bytes());
    p.extend_from_slice(&[0xff; 8]); // no cookie
    let mut out = HashMap::new();
    dump(&p, |m| {
        if m.len() < 16 {
            return;
        }
        let mut d = PacketDiag {
            sk_type: m[1],
            proto: u16_at(m, 2),
            ino: u32_at(m, 4),
            ..Default::default()
        };
        attrs(&m[16..], |ty, a| match ty {
            0 => {
                d.index = u32_at(a, 0);
                d.version = u32_at(a, 4);
                d.reserve = u32_at(a, 8);
                d.copy_thresh = u32_at(a, 12);
                d.tstamp = u32_at(a, 16);
                d.flags = u32_at(a, 20);
            }
            1 => {
                for mc in a.chunks_exact(44) {
                    let alen = usize::from(u16_at(mc, 10)).min(32);
                    d.mclist.push(PacketMc {
                        index: u32_at(mc, 0),
                        count: u32_at(mc, 4),
                        ty: u16_at(mc, 8),
                        addr: mc[12..12 + alen].to_vec(),
                    });
                }
            }
            2 | 3 => d.ring = true,
            4 => d.fanout = Some(u32_at(a, 0)),
            _ => {}
        });
        out.insert(d.ino, d);
    })?;
    Ok(out)
}

/// A TCP socket on a port: its state, its local address, and the
/// kernel's `inet_diag_sockid` (ports, addresses, interface, cookie)
/// naming it.
#[derive(Debug, Clone)]
pub struct OnPort {
    pub family: u8,
    pub state: u8,
    pub local: std::net::IpAddr,
    /// IPV6_V6ONLY of an IPv6 socket (not told for TIME_WAIT).
    pub v6only: bool,
    id: [u8; 48],
}

impl OnPort {
    pub fn time_wait(&self) -> bool {
        u32::from(self.state) == TCP_TIME_WAIT
    }
}

/// The TCP sockets of the caller's network namespace, in any state (as
/// TIME_WAIT), whose local port is `port`, IPv4 and IPv6.
pub fn tcp_on_port(port: u16) -> std::io::Result<Vec<OnPort>> {
    let mut out = Vec::new();
    for family in [nix::libc::AF_INET as u8, nix::libc::AF_INET6 as u8] {
        let mut p = vec![family, nix::libc::IPPROTO_TCP as u8, 0, 0];
        p.extend_from_slice(&u32::MAX.to_le_bytes());
        // The kernel filters a dump by source port when one is given.
        let mut id = [0u8; 48];
        id[0..2].copy_from_slice(&port.to_be_bytes());
        p.extend_from_slice(&id);
        dump(&p, |m| {
            if m.len() < 52 || u16::from_be_bytes([m[4], m[5]]) != port {
                return;
            }
            let mut id = [0u8; 48];
            id.copy_from_slice(&m[4..52]);
            let local = if m[0] == nix::libc::AF_INET as u8 {
                std::net::IpAddr::from([m[8], m[9], m[10], m[11]])
            } else {
                let mut a = [0u8; 16];
                a.copy_from_slice(&m[8..24]);
                std::net::IpAddr::from(a)
            };
            let mut v6only = false;
            if m.len() > 72 {
                attrs(&m[72..], |ty, v| {
                    if ty == INET_DIAG_SKV6ONLY {
                        v6only = v.first().is_some_and(|&b| b != 0);
                    }
                });
            }
            out.push(OnPort {
                family: m[0],
                state: m[1],
                local,
                v6only,
                id,
            });
        })?;
    }
    Ok(out)
}

/// Ends a TIME_WAIT socket at once (`SOCK_DESTROY`; needs CAP_NET_ADMIN
/// and a kernel built with CONFIG_INET_DIAG_DESTROY). One that ended
/// meanwhile gives ENOENT; one in another state, EINVAL.
pub fn destroy_time_wait(t: &OnPort) -> std::io::Result<()> {
    if !t.time_wait() {
        return Err(std::io::Error::from_raw_os_error(nix::libc::EINVAL));
    }
    let mut p = vec![t.family, nix::libc::IPPROTO_TCP as u8, 0, 0];
    p.extend_from_slice(&(1u32 << TCP_TIME_WAIT).to_le_bytes());
    p.extend_from_slice(&t.id);
    exchange(SOCK_DESTROY, NLM_F_ACK, &p, |_| {})
}

/// A device number as sock_diag reports it (the kernel's `major << 20 |
/// minor`) in the form `stat` gives (`st_dev`).
pub fn stat_dev(kernel_dev: u32) -> u64 {
    nix::sys::stat::makedev(
        u64::from(kernel_dev >> 20),
        u64::from(kernel_dev & 0xf_ffff),
    )
}

//! Inet sockets that are not TCP connections, made in crit before the
//! fork: listeners, bound or connected UDP sockets, closed sockets; and
//! the options every inet socket gets back. Connections are
//! [`super::tcp`]'s.
//!
//! A listener's port may still hold TIME_WAITs of the connections its
//! server closed before the dump. A socket dumped without SO_REUSEADDR
//! left TIME_WAITs without it too, and the kernel then refuses the port
//! to any new socket until they end (60 s): a server restarted right
//! after serving fails to bind, and so does CRIU 4.2's restore. crit ends
//! the TIME_WAITs on the listener's own address and port
//! (`SOCK_DESTROY`; most likely its own connections', though after the
//! dump the port was free for anyone's) and binds again, as if the
//! server had asked for address reuse; `-v` says how many. A port a live
//! socket holds fails the restore, and then no TIME_WAIT is ended.

use super::error::{FileError, FileFault, On};
use super::Log;
use crate::error::Result;
use crate::image::pb;
use crate::model::unix::{ST_CLOSE, ST_LISTEN};
use nix::errno::Errno;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

/// An inet socket, and whether it is a connection still in repair mode
/// (see [`super::tcp::restore`]).
pub fn open(
    s: &pb::InetSkEntry,
    opts: &super::Options,
    dir: &std::path::Path,
    log: &Log,
) -> Result<(OwnedFd, bool)> {
    use nix::sys::socket::{self as so, sockopt, AddressFamily, Backlog, SockType};
    let fam = match s.family {
        2 => AddressFamily::Inet,
        10 => AddressFamily::Inet6,
        f => {
            return Err(FileError::Refused {
                on: On::Inet(s.ino),
                why: FileFault::Family(f),
            }
            .into())
        }
    };
    // One word for IPv4, four for IPv6, as CRIU and crit dump write them:
    // a shorter address read as zeros, and a listener dumped on
    // 127.0.0.1 came back on every interface.
    let words = if s.family == 2 { 1 } else { 4 };
    for (which, a) in [("source", &s.src_addr), ("destination", &s.dst_addr)] {
        if a.len() != words {
            return Err(FileError::Refused {
                on: On::Inet(s.ino),
                why: FileFault::AddrWords {
                    which,
                    got: a.len(),
                    want: words,
                },
            }
            .into());
        }
    }
    let ty = match s.r#type {
        1 => SockType::Stream,
        2 => SockType::Datagram,
        3 => SockType::Raw,
        t => {
            return Err(FileError::Refused {
                on: On::Inet(s.ino),
                why: FileFault::Type(t),
            }
            .into())
        }
    };
    if super::tcp::is_connection(s) {
        let (fd, in_repair) = super::tcp::restore(s, fam, dir, opts.tcp_close)?;
        super::skopts::set(&fd, &s.opts, On::Inet(s.ino))?;
        if !in_repair {
            finish(&fd, s)?;
        }
        return Ok((fd, in_repair));
    }
    // A connected UDP, ping or raw socket is bound and connected again.
    let peered = ty != SockType::Stream && s.state == super::tcp::TCP_ESTABLISHED;
    if s.state != ST_LISTEN && s.state != ST_CLOSE && !peered {
        return Err(FileError::TcpState {
            ino: s.ino,
            state: s.state,
        }
        .into());
    }
    // The protocol as recorded: a raw socket's is its own, a ping
    // socket's ICMP.
    let fd = crate::sys::sock::socket(fam as i32, ty as i32, s.proto as i32).map_err(|source| {
        FileError::IoArg {
            on: On::Inet(s.ino),
            what: "socket",
            arg: format!("type {} protocol {}", s.r#type, s.proto),
            source,
        }
    })?;
    // Address reuse before the bind; keepalive and the TCP options too:
    // a listener passes TCP_NODELAY and keepalive on to what it accepts.
    options(&fd, s);
    ip_opts(&fd, s)?;
    super::skopts::set(&fd, &s.opts, On::Inet(s.ino))?;
    if s.v6only == Some(true) {
        let _ = so::setsockopt(&fd, sockopt::Ipv6V6Only, &true);
    }
    let bound = s.src_port != 0 || s.src_addr.iter().any(|&a| a != 0);
    // A TCP port can still hold TIME_WAITs of the dumped tree's closed
    // connections: bind and listen with address reuse, as CRIU 4.2 does
    // (enough when they had it too; those without it are ended below),
    // then give the socket its dumped value back. Not UDP: there reuse
    // on both sides would share the port with a stranger's socket
    // instead of failing.
    let lend_reuse = bound && ty == SockType::Stream && s.opts.reuseaddr != Some(true);
    if lend_reuse {
        set_reuseaddr(&fd, s, true)?;
    }
    if bound {
        let local = crate::model::netlock::addr_of(s.family, &s.src_addr)
            .map(|a| SocketAddr::new(a, s.src_port as u16));
        let mut r = bind(&fd, local);
        if r == Err(Errno::EADDRINUSE) && ty == SockType::Stream {
            if let Some(at) = local {
                let ended = end_time_waits(at, s.v6only == Some(true));
                if ended > 0 {
                    log.info(format!(
                        "inet socket {}: ended {ended} TIME_WAIT(s) on {at} to bind it",
                        s.ino
                    ));
                    r = bind(&fd, local);
                }
            }
        }
        r.map_err(|source| FileError::NixArg {
            on: On::Inet(s.ino),
            what: "bind port",
            arg: s.src_port.to_string(),
            source,
        })?;
    }
    if peered {
        let peer = crate::model::netlock::addr_of(s.family, &s.dst_addr)
            .map(|a| SocketAddr::new(a, s.dst_port as u16));
        let r = match peer {
            Some(SocketAddr::V4(a)) => so::connect(fd.as_raw_fd(), &so::SockaddrIn::from(a)),
            Some(SocketAddr::V6(a)) => so::connect(fd.as_raw_fd(), &so::SockaddrIn6::from(a)),
            None => Err(Errno::EAFNOSUPPORT),
        };
        r.map_err(|source| FileError::Nix {
            on: On::Inet(s.ino),
            what: "connect",
            source,
        })?;
    }
    if s.state == ST_LISTEN {
        so::listen(
            &fd,
            Backlog::new(s.backlog as i32).unwrap_or(Backlog::MAXCONN),
        )
        .map_err(|source| FileError::Nix {
            on: On::Inet(s.ino),
            what: "listen",
            source,
        })?;
    }
    if lend_reuse {
        set_reuseaddr(&fd, s, false)?;
    }
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), (s.flags & 0o4000) as i32).map_err(
        |source| FileError::IoOn {
            on: On::Inet(s.ino),
            source,
        },
    )?;
    Ok((fd, false))
}

fn set_reuseaddr(fd: &OwnedFd, s: &pb::InetSkEntry, on: bool) -> Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::ReuseAddr};
    setsockopt(fd, ReuseAddr, &on).map_err(|source| {
        FileError::Nix {
            on: On::Inet(s.ino),
            what: "SO_REUSEADDR",
            source,
        }
        .into()
    })
}

/// A TCP connection's options and file status flags.
pub fn finish(fd: &OwnedFd, s: &pb::InetSkEntry) -> Result<()> {
    options(fd, s);
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), (s.flags & 0o4000) as i32).map_err(
        |source| {
            FileError::IoOn {
                on: On::Inet(s.ino),
                source,
            }
            .into()
        },
    )
}

/// The options a TCP or UDP socket keeps: address reuse as dumped (for a
/// connection, leaving repair mode reset it), TCP_NODELAY, TCP_CORK and
/// keepalive. Best effort, as CRIU 4.2 sets them.
fn options(fd: &OwnedFd, s: &pb::InetSkEntry) {
    use crate::sys::sockopt::set_int;
    let f = std::os::fd::AsFd::as_fd(fd);
    let _ = set_int(
        f,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(s.opts.reuseaddr == Some(true)),
    );
    if s.opts.so_reuseport == Some(true) {
        let _ = set_int(f, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1);
    }
    if s.opts.so_keepalive == Some(true) {
        let _ = set_int(f, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    }
    if let Some(t) = &s.tcp_opts {
        let set = |o: i32, v: Option<u32>| {
            if let Some(v) = v.filter(|&v| v != 0) {
                let _ = set_int(f, libc::IPPROTO_TCP, o, v as i32);
            }
        };
        set(libc::TCP_NODELAY, t.nodelay.map(u32::from));
        set(libc::TCP_CORK, t.cork.map(u32::from));
        set(libc::TCP_KEEPCNT, t.keepcnt);
        set(libc::TCP_KEEPIDLE, t.keepidle);
        set(libc::TCP_KEEPINTVL, t.keepintvl);
    }
}

/// The IP options the images record (`ip_opts`), before the bind (a
/// socket bound to an address not of this machine needs IP_FREEBIND):
/// IP_FREEBIND, IP_PKTINFO, IP_TOS and IP_TTL, or IPV6_FREEBIND and
/// IPV6_RECVPKTINFO, and a raw socket's, as CRIU 4.2 sets them.
pub fn ip_opts(fd: &OwnedFd, s: &pb::InetSkEntry) -> Result<()> {
    use crate::sys::sockopt::{ICMP_FILTER, IPV6_HDRINCL, SOL_ICMPV6, SOL_RAW};
    let Some(o) = &s.ip_opts else {
        return Ok(());
    };
    let f = std::os::fd::AsFd::as_fd(fd);
    let err = |what| {
        move |source| {
            crate::error::Error::from(FileError::Io {
                on: On::Inet(s.ino),
                what,
                source,
            })
        }
    };
    let set = |level, name, v: Option<u32>, what| match v {
        Some(v) => crate::sys::sockopt::set_int(f, level, name, v as i32).map_err(err(what)),
        None => Ok(()),
    };
    let flag = |b: Option<bool>| b.filter(|&b| b).map(|_| 1);
    let (ip, ip6) = (libc::IPPROTO_IP, libc::IPPROTO_IPV6);
    let v6 = s.family == libc::AF_INET6 as u32;
    if v6 {
        set(ip6, libc::IPV6_FREEBIND, flag(o.freebind), "IPV6_FREEBIND")?;
        set(
            ip6,
            libc::IPV6_RECVPKTINFO,
            flag(o.pktinfo),
            "IPV6_RECVPKTINFO",
        )?;
    } else {
        set(ip, libc::IP_FREEBIND, flag(o.freebind), "IP_FREEBIND")?;
        set(ip, libc::IP_PKTINFO, flag(o.pktinfo), "IP_PKTINFO")?;
        set(ip, libc::IP_TOS, o.tos, "IP_TOS")?;
        set(ip, libc::IP_TTL, o.ttl, "IP_TTL")?;
    }
    // A raw socket's own: header included, no fragmentation, which ICMP
    // types it takes (ICMP_FILTER, ICMPV6_FILTER).
    if let Some(r) = &o.raw {
        if v6 {
            set(ip6, IPV6_HDRINCL, flag(r.hdrincl), "IPV6_HDRINCL")?;
        } else {
            set(ip, libc::IP_HDRINCL, flag(r.hdrincl), "IP_HDRINCL")?;
            set(ip, libc::IP_NODEFRAG, flag(r.nodefrag), "IP_NODEFRAG")?;
        }
        if !r.icmpv_filter.is_empty() {
            let bytes: Vec<u8> = r
                .icmpv_filter
                .iter()
                .flat_map(|w| w.to_ne_bytes())
                .collect();
            let level = if v6 { SOL_ICMPV6 } else { SOL_RAW };
            crate::sys::sockopt::set_bytes(f, level, ICMP_FILTER, &bytes)
                .map_err(err("ICMP_FILTER"))?;
        }
    }
    Ok(())
}

fn bind(fd: &OwnedFd, at: Option<SocketAddr>) -> nix::Result<()> {
    use nix::sys::socket::{bind, SockaddrIn, SockaddrIn6};
    match at {
        Some(SocketAddr::V4(a)) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
        Some(SocketAddr::V6(a)) => bind(fd.as_raw_fd(), &SockaddrIn6::from(a)),
        None => Err(Errno::EAFNOSUPPORT),
    }
}

/// Ends the TIME_WAITs that keep `at` from a new socket: on its port, and
/// on its address or, for a wildcard, on any address it covers (IPv4's
/// too for an IPv6 wildcard not `v6only`). None while a live socket holds
/// the port where the two overlap: the bind would fail anyway. How many
/// ended; none when sock_diag cannot list or end them (the bind then
/// fails as it did).
fn end_time_waits(at: SocketAddr, v6only: bool) -> usize {
    let Ok(on_port) = crate::sys::sockdiag::tcp_on_port(at.port()) else {
        return 0;
    };
    let overlaps = |t: &crate::sys::sockdiag::OnPort| {
        covers(at.ip(), v6only, t.local) || covers(t.local, t.v6only, at.ip())
    };
    if on_port.iter().any(|t| !t.time_wait() && overlaps(t)) {
        return 0;
    }
    on_port
        .iter()
        .filter(|t| t.time_wait() && covers(at.ip(), v6only, t.local))
        .filter(|t| crate::sys::sockdiag::destroy_time_wait(t).is_ok())
        .count()
}

/// Whether a socket bound to `bound` conflicts with one whose local
/// address is `local` on the same port.
fn covers(bound: IpAddr, v6only: bool, local: IpAddr) -> bool {
    let mapped = |a: IpAddr| match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(a),
        v4 => v4,
    };
    match (bound, mapped(local)) {
        (IpAddr::V4(b), IpAddr::V4(l)) => b.is_unspecified() || b == l,
        (IpAddr::V6(b), IpAddr::V6(l)) => b.is_unspecified() || b == l,
        (IpAddr::V6(b), IpAddr::V4(l)) => {
            (b.is_unspecified() && !v6only) || b.to_ipv4_mapped() == Some(l)
        }
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::covers;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bound_address_covers_its_own_and_a_wildcard_every_one_of_its_family() {
        assert!(covers(ip("127.0.0.1"), false, ip("127.0.0.1")));
        assert!(!covers(ip("127.0.0.1"), false, ip("127.0.0.2")));
        assert!(covers(ip("0.0.0.0"), false, ip("10.1.2.3")));
        assert!(!covers(ip("0.0.0.0"), false, ip("::1")));
        assert!(covers(ip("::"), false, ip("::1")));
        assert!(covers(ip("::"), false, ip("10.1.2.3")));
        assert!(!covers(ip("::"), true, ip("10.1.2.3")));
        assert!(covers(ip("::"), true, ip("::1")));
        assert!(covers(ip("::ffff:127.0.0.1"), false, ip("127.0.0.1")));
        assert!(covers(ip("127.0.0.1"), false, ip("::ffff:127.0.0.1")));
        assert!(!covers(ip("::1"), false, ip("127.0.0.1")));
    }
}

//! One forged TCP segment, sent through a raw socket: how a repaired
//! half-closed connection gets the FIN (or the ACK of its own FIN) that
//! its peer sent before the dump. Repair mode can put data into a receive
//! queue, but no FIN; a segment "from the peer" is the kernel's only way
//! in. The segment carries the lock's mark (0xC114) so that the network
//! lock lets it through. Needs CAP_NET_RAW in the socket's network
//! namespace.

use nix::libc;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// TCP header flags.
pub const FIN: u8 = 0x01;
pub const ACK: u8 = 0x10;

/// The mark the network lock lets through (SOCCR_MARK).
const MARK: libc::c_int = 0xC114;

/// One segment without options or data.
#[derive(Debug, Clone, Copy)]
pub struct Segment {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    /// The window field as sent (already scaled down).
    pub window: u16,
}

/// The internet checksum (RFC 1071) of `parts`, one after the other.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &b in *p {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn tcp_header(s: &Segment, pseudo: &[u8]) -> [u8; 20] {
    let mut t = [0u8; 20];
    t[0..2].copy_from_slice(&s.from.port().to_be_bytes());
    t[2..4].copy_from_slice(&s.to.port().to_be_bytes());
    t[4..8].copy_from_slice(&s.seq.to_be_bytes());
    t[8..12].copy_from_slice(&s.ack.to_be_bytes());
    t[12] = 5 << 4; // 20 bytes, no options
    t[13] = s.flags;
    t[14..16].copy_from_slice(&s.window.to_be_bytes());
    let c = checksum(&[pseudo, &t]);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    t
}

fn ipv4_packet(s: &Segment, from: Ipv4Addr, to: Ipv4Addr) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&from.octets());
    pseudo.extend_from_slice(&to.octets());
    pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8, 0, 20]);
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = libc::IPPROTO_TCP as u8;
    ip[12..16].copy_from_slice(&from.octets());
    ip[16..20].copy_from_slice(&to.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut p = ip.to_vec();
    p.extend_from_slice(&tcp_header(s, &pseudo));
    p
}

fn ipv6_packet(s: &Segment, from: Ipv6Addr, to: Ipv6Addr) -> Vec<u8> {
    let mut pseudo = Vec::with_capacity(40);
    pseudo.extend_from_slice(&from.octets());
    pseudo.extend_from_slice(&to.octets());
    pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, libc::IPPROTO_TCP as u8]);
    let mut ip = [0u8; 40];
    ip[0] = 0x60;
    ip[4..6].copy_from_slice(&20u16.to_be_bytes());
    ip[6] = libc::IPPROTO_TCP as u8;
    ip[7] = 64; // hop limit
    ip[8..24].copy_from_slice(&from.octets());
    ip[24..40].copy_from_slice(&to.octets());
    let mut p = ip.to_vec();
    p.extend_from_slice(&tcp_header(s, &pseudo));
    p
}

/// An IPv4 address, also when written as an IPv4-mapped IPv6 one (a
/// dual-stack socket's connection over IPv4).
fn as_v4(a: IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(v4) => Some(v4),
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
    }
}

/// The whole IP packet of `s`, and whether it is IPv6; `None` for ends
/// of two families (no connection has them).
fn packet(s: &Segment) -> Option<(Vec<u8>, bool)> {
    match (as_v4(s.from.ip()), as_v4(s.to.ip()), s.from.ip(), s.to.ip()) {
        (Some(f), Some(t), _, _) => Some((ipv4_packet(s, f, t), false)),
        (None, None, IpAddr::V6(f), IpAddr::V6(t)) => Some((ipv6_packet(s, f, t), true)),
        _ => None,
    }
}

/// Sends `s` as a raw IP packet (header included) in the caller's network
/// namespace, marked to pass the network lock.
pub fn send(s: &Segment) -> io::Result<()> {
    let (bytes, v6) = packet(s).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} and {} are of two families", s.from, s.to),
        )
    })?;
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a new descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    super::sockopt::set_int(
        std::os::fd::AsFd::as_fd(&sock),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        MARK,
    )?;
    // IPPROTO_RAW sockets take the header from the data; the address
    // only picks the route (port 0: raw sockets have none).
    let to = match (v6, s.to.ip()) {
        (false, a) => SocketAddr::new(as_v4(a).map_or(a, IpAddr::V4), 0),
        (true, a) => SocketAddr::new(a, 0),
    };
    let addr = nix::sys::socket::SockaddrStorage::from(to);
    let r = nix::sys::socket::sendto(
        sock.as_raw_fd(),
        &bytes,
        &addr,
        nix::sys::socket::MsgFlags::empty(),
    );
    match r {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(n) => Err(io::Error::other(format!(
            "raw send took {n} of {} bytes",
            bytes.len()
        ))),
        Err(e) => Err(io::Error::from(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(from: &str, to: &str) -> Segment {
        Segment {
            from: from.parse().unwrap(),
            to: to.parse().unwrap(),
            seq: 0x0102_0304,
            ack: 0xa0b0_c0d0,
            flags: FIN | ACK,
            window: 512,
        }
    }

    /// A correct header sums to zero with its own checksum in it.
    #[test]
    fn checksums_verify() {
        let (p, v6) = packet(&seg("10.1.2.3:80", "127.0.0.1:40000")).unwrap();
        assert!(!v6);
        assert_eq!(p.len(), 40);
        assert_eq!(checksum(&[&p[..20]]), 0, "IP header");
        let mut pseudo = p[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 20]);
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "TCP segment");
        assert_eq!(&p[20..22], &80u16.to_be_bytes());
        assert_eq!(p[33], FIN | ACK);

        let (p, v6) = packet(&seg("[::1]:80", "[fe80::2]:40000")).unwrap();
        assert!(v6);
        assert_eq!(p.len(), 60);
        let mut pseudo = p[8..40].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
        assert_eq!(checksum(&[&pseudo, &p[40..]]), 0, "TCP segment over IPv6");
    }

    /// A dual-stack socket's connection over IPv4 goes as IPv4.
    #[test]
    fn mapped_addresses_go_as_ipv4() {
        let (p, v6) = packet(&seg("[::ffff:10.0.0.1]:80", "[::ffff:127.0.0.1]:9")).unwrap();
        assert!(!v6);
        assert_eq!(&p[12..16], &[10, 0, 0, 1]);
        assert_eq!(&p[16..20], &[127, 0, 0, 1]);
        assert!(packet(&seg("[::ffff:10.0.0.1]:80", "[::1]:9")).is_none());
    }

    #[test]
    fn odd_lengths_are_padded() {
        assert_eq!(checksum(&[&[0x12, 0x34, 0x56]]), !(0x1234u16 + 0x5600));
        // Parts join as one stream of bytes, whatever their lengths.
        assert_eq!(
            checksum(&[&[0x12], &[0x34, 0x56]]),
            checksum(&[&[0x12, 0x34, 0x56]])
        );
    }
}

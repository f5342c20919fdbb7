//! Packet sockets (files.img's `psk`, crit's or CRIU's) as CRIU 4.2's
//! restore makes them: a socket of the type and protocol, bound to the
//! interface (by index: the tree's network namespace keeps its devices'
//! indexes, and loopback's is 1 everywhere), its packet options
//! (version, reserve, timestamp source, copy threshold, auxdata, origdev,
//! vnet_hdr, loss), its multicast memberships, its fanout group, then
//! the options of every socket and O_NONBLOCK. A ring, or the obsolete SOCK_PACKET
//! type, is refused.

use super::error::{FileError, On};
use crate::error::Result;
use crate::image::pb;
use crate::sys::sockopt;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const SOL_PACKET: i32 = 263;
const PACKET_ADD_MEMBERSHIP: i32 = 1;
const PACKET_COPY_THRESH: i32 = 7;
const PACKET_AUXDATA: i32 = 8;
const PACKET_ORIGDEV: i32 = 9;
const PACKET_VERSION: i32 = 10;
const PACKET_RESERVE: i32 = 12;
const PACKET_LOSS: i32 = 14;
const PACKET_VNET_HDR: i32 = 15;
const PACKET_TIMESTAMP: i32 = 17;
const PACKET_FANOUT: i32 = 18;

/// `struct packet_mreq_max`: the kernel takes up to 32 bytes of address.
fn mreq(m: &pb::PacketMclist) -> Vec<u8> {
    let alen = m.addr.len().min(32);
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&(m.index as i32).to_ne_bytes());
    b.extend_from_slice(&(m.r#type as u16).to_ne_bytes());
    b.extend_from_slice(&(alen as u16).to_ne_bytes());
    let mut addr = [0u8; 32];
    addr[..alen].copy_from_slice(&m.addr[..alen]);
    b.extend_from_slice(&addr);
    b
}

/// Makes the packet socket of file `id`.
pub fn open(p: &pb::PacketSockEntry, id: u32) -> Result<OwnedFd> {
    const SOCK_PACKET: u32 = 10;
    let refuse = |why| -> crate::error::Error { FileError::PacketSocket { id, why }.into() };
    if p.rx_ring.is_some() || p.tx_ring.is_some() {
        return Err(refuse("an mmap'ed ring is not restored"));
    }
    if p.r#type == SOCK_PACKET {
        return Err(refuse("the obsolete type SOCK_PACKET is not restored"));
    }
    let io = |what: &'static str| {
        move |source| -> crate::error::Error {
            FileError::Io {
                on: On::FileId(id),
                what,
                source,
            }
            .into()
        }
    };
    let fd = crate::sys::sock::packet_socket(p.r#type as i32, p.protocol as u16)
        .map_err(io("socket(AF_PACKET)"))?;
    crate::sys::sock::bind_packet(fd.as_raw_fd(), p.ifindex as i32)
        .map_err(io("bind to its interface"))?;
    let f = fd.as_fd();
    let set =
        |name, v: u32, what| sockopt::set_int(f, SOL_PACKET, name, v as i32).map_err(io(what));
    set(PACKET_VERSION, p.version, "PACKET_VERSION")?;
    set(PACKET_RESERVE, p.reserve, "PACKET_RESERVE")?;
    set(PACKET_TIMESTAMP, p.timestamp, "PACKET_TIMESTAMP")?;
    set(PACKET_COPY_THRESH, p.copy_thresh, "PACKET_COPY_THRESH")?;
    for (on, name, what) in [
        (p.aux_data, PACKET_AUXDATA, "PACKET_AUXDATA"),
        (p.orig_dev, PACKET_ORIGDEV, "PACKET_ORIGDEV"),
        (p.vnet_hdr, PACKET_VNET_HDR, "PACKET_VNET_HDR"),
        (p.loss, PACKET_LOSS, "PACKET_LOSS"),
    ] {
        if on {
            set(name, 1, what)?;
        }
    }
    for m in &p.mclist {
        sockopt::set_bytes(f, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq(m))
            .map_err(io("PACKET_ADD_MEMBERSHIP"))?;
    }
    if let Some(fanout) = p.fanout {
        set(PACKET_FANOUT, fanout, "PACKET_FANOUT")?;
    }
    super::skopts::set(&fd, &p.opts, On::FileId(id))?;
    crate::sys::fdops::set_status_flags(fd.as_raw_fd(), (p.flags & 0o4000) as i32)
        .map_err(io("O_NONBLOCK"))?;
    Ok(fd)
}

//! Packet sockets (AF_PACKET: tcpdump, DHCP clients, keepalived) into
//! files.img's `psk` entry, as CRIU 4.2 writes it, from what sock_diag
//! tells (`packet_diag`): type, protocol (stored in network order, as
//! `socket(2)` takes it), the interface it is bound to, version, reserve,
//! copy threshold, timestamp source, the auxdata, origdev, vnet_hdr and
//! loss flags, multicast memberships and the fanout group.
//!
//! Refused, naming why: an mmap'ed ring (PACKET_RX_RING/TX_RING: its
//! mapping would have to come back with the socket), the obsolete
//! SOCK_PACKET type, and a membership added more than once (CRIU's
//! images hold one of each).

use crate::image::pb;
use crate::sys::sockdiag::{self, PacketDiag};

/// Why `d` cannot be dumped, if it cannot.
pub fn refusal(d: &PacketDiag) -> Option<&'static str> {
    const SOCK_PACKET: u8 = 10;
    if d.ring {
        Some("it has an mmap'ed ring (PACKET_RX_RING or PACKET_TX_RING), which crit does not dump")
    } else if d.sk_type == SOCK_PACKET {
        Some("it is of the obsolete type SOCK_PACKET")
    } else if d.mclist.iter().any(|m| m.count != 1) {
        Some("a membership was added more than once, which CRIU's images cannot hold")
    } else {
        None
    }
}

/// The entry of socket `d`, file `id`, opened with `flags`.
pub fn entry(
    d: &PacketDiag,
    id: u32,
    flags: u32,
    fown: pb::FownEntry,
    opts: pb::SkOptsEntry,
    ns_id: Option<u32>,
) -> pb::PacketSockEntry {
    pb::PacketSockEntry {
        id,
        r#type: u32::from(d.sk_type),
        protocol: u32::from(d.proto.to_be()),
        flags,
        ifindex: d.index,
        fown,
        opts,
        version: d.version,
        reserve: d.reserve,
        aux_data: d.flags & sockdiag::PDI_AUXDATA != 0,
        orig_dev: d.flags & sockdiag::PDI_ORIGDEV != 0,
        vnet_hdr: d.flags & sockdiag::PDI_VNETHDR != 0,
        loss: d.flags & sockdiag::PDI_LOSS != 0,
        timestamp: d.tstamp,
        copy_thresh: d.copy_thresh,
        mclist: d
            .mclist
            .iter()
            .map(|m| pb::PacketMclist {
                index: m.index,
                r#type: u32::from(m.ty),
                addr: m.addr.clone(),
            })
            .collect(),
        fanout: d.fanout,
        rx_ring: None,
        tx_ring: None,
        ns_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::sockdiag::PacketMc;

    #[test]
    fn the_protocol_goes_in_network_order_and_rings_are_refused() {
        let d = PacketDiag {
            ino: 7,
            sk_type: libc::SOCK_RAW as u8,
            proto: 3,
            index: 1,
            flags: sockdiag::PDI_AUXDATA,
            mclist: vec![PacketMc {
                index: 1,
                count: 1,
                ty: 1,
                addr: vec![1, 0, 0x5e, 0, 0, 1],
            }],
            ..Default::default()
        };
        assert_eq!(refusal(&d), None);
        let e = entry(&d, 5, 2, Default::default(), Default::default(), Some(9));
        assert_eq!(e.protocol, 0x0300);
        assert!(e.aux_data && !e.loss);
        assert_eq!(e.mclist[0].addr, vec![1, 0, 0x5e, 0, 0, 1]);
        assert_eq!(e.fanout, None);
        assert!(refusal(&PacketDiag {
            ring: true,
            ..d.clone()
        })
        .is_some());
        let twice = PacketDiag {
            mclist: vec![PacketMc {
                count: 2,
                ..d.mclist[0].clone()
            }],
            ..d
        };
        assert!(refusal(&twice).is_some());
    }
}

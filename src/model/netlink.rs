//! The netlink protocols crit can make a socket of at restore, which the
//! dump checks before it records one.

use nix::sys::socket::SockProtocol;

/// Every netlink protocol nix names (NETLINK_XFRM and NETLINK_CONNECTOR,
/// among others, it does not).
const PROTOCOLS: [SockProtocol; 15] = [
    SockProtocol::NetlinkRoute,
    SockProtocol::NetlinkUserSock,
    SockProtocol::NetlinkSockDiag,
    SockProtocol::NetlinkNFLOG,
    SockProtocol::NetlinkSELinux,
    SockProtocol::NetlinkISCSI,
    SockProtocol::NetlinkAudit,
    SockProtocol::NetlinkFIBLookup,
    SockProtocol::NetlinkNetFilter,
    SockProtocol::NetlinkSCSITransport,
    SockProtocol::NetlinkRDMA,
    SockProtocol::NetlinkDECNetRoutingMessage,
    SockProtocol::NetlinkKObjectUEvent,
    SockProtocol::NetlinkGeneric,
    SockProtocol::NetlinkCrypto,
];

/// The protocol numbered `p` (SO_PROTOCOL, the image's `protocol`), if
/// crit restores it.
pub fn protocol(p: u32) -> Option<SockProtocol> {
    PROTOCOLS.into_iter().find(|&k| k as i32 as u32 == p)
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_the_kernels() {
        assert_eq!(super::protocol(0), Some(super::SockProtocol::NetlinkRoute));
        assert_eq!(
            super::protocol(16),
            Some(super::SockProtocol::NetlinkGeneric)
        );
        assert_eq!(super::protocol(6), None, "NETLINK_XFRM");
    }
}

//! The tree's network namespace. Container managers either configure it
//! themselves (`--empty-ns net`: restore makes an empty one) or hand in
//! one they prepared (`--external net[INO]:KEY`). Otherwise crit dumps
//! it when its only device is loopback: netdev-N.img with the device's
//! flags and MTU, and netns-N.img. Loopback's addresses (127.0.0.1/8,
//! ::1) come back with the device going up; any other device is refused.

use crate::dump::error::DumpError;
use crate::dump::opts::NsOpts;
use crate::error::Result;
use crate::image::pb;
use crate::image::typed::ImageBuilder;
use crate::sys::netdev::{self, Link};

const IFF_LOOPBACK: u32 = 0x8;

/// A network namespace crit dumps itself.
pub struct NetNs {
    pub links: Vec<Link>,
}

/// Nothing to refuse yet: how the namespace is handled is decided by
/// the options (read() refuses devices other than loopback).
pub fn check_options(_pid: i32, _o: &NsOpts) -> Result<()> {
    Ok(())
}

/// Reads the namespace the calling thread is in (that of task `pid`).
pub fn read(pid: i32) -> Result<NetNs> {
    let links = netdev::links().map_err(|source| DumpError::NsCall {
        pid,
        ns: crate::model::ns::Kind::Net,
        what: "listing devices",
        source,
    })?;
    if let Some(l) = links.iter().find(|l| l.flags & IFF_LOOPBACK == 0) {
        return Err(DumpError::NetDevice {
            pid,
            name: l.name.clone(),
            kind: "not loopback".to_string(),
        }
        .into());
    }
    Ok(NetNs { links })
}

/// netdev-ID.img and netns-ID.img.
pub fn images(id: u32, n: &NetNs) -> Result<Vec<(String, ImageBuilder)>> {
    let mut b = ImageBuilder::new("NETDEV")?;
    for l in &n.links {
        b.entry(&pb::NetDeviceEntry {
            r#type: pb::NdType::Loopback as i32,
            ifindex: l.index,
            mtu: l.mtu,
            flags: l.flags,
            name: l.name.clone(),
            ..Default::default()
        });
    }
    let mut ns = ImageBuilder::new("NETNS")?;
    ns.entry(&pb::NetnsEntry::default());
    Ok(vec![
        (format!("netdev-{id}.img"), b),
        (format!("netns-{id}.img"), ns),
    ])
}

//! Network devices of the calling thread's network namespace: names,
//! flags and MTU (SIOCGIF* ioctls on a socket made in that namespace),
//! and setting flags.

use super::err;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

/// A link as restore needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// IFF_* flags.
    pub flags: u32,
    pub mtu: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    /// ifr_flags (short) or ifr_mtu (int), at the union's start.
    data: [u8; 24],
}

fn socket() -> io::Result<OwnedFd> {
    nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| err::os("socket(AF_INET) for link ioctls", e as i32))
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    let mut r = IfReq {
        name: [0; 16],
        data: [0; 24],
    };
    if name.len() >= 16 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "link name too long",
        ));
    }
    r.name[..name.len()].copy_from_slice(name.as_bytes());
    Ok(r)
}

fn ioctl(fd: &OwnedFd, req: libc::c_ulong, r: &mut IfReq, what: &str) -> io::Result<()> {
    // SAFETY: `r` is a properly sized struct ifreq (40 bytes) that lives
    // across the call; the kernel reads the name and fills or reads the
    // union.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, r as *mut IfReq) };
    if rc < 0 {
        return Err(err::last(what));
    }
    Ok(())
}

/// Every link of the namespace.
pub fn links() -> io::Result<Vec<Link>> {
    let s = socket()?;
    let mut out = Vec::new();
    for i in nix::net::if_::if_nameindex()
        .map_err(|e| err::os("if_nameindex", e as i32))?
        .iter()
    {
        let name = i.name().to_string_lossy().into_owned();
        let mut r = ifreq(&name)?;
        ioctl(
            &s,
            libc::SIOCGIFFLAGS,
            &mut r,
            &format!("SIOCGIFFLAGS {name}"),
        )?;
        let flags = u16::from_ne_bytes([r.data[0], r.data[1]]) as u32;
        let mut r = ifreq(&name)?;
        ioctl(&s, libc::SIOCGIFMTU, &mut r, &format!("SIOCGIFMTU {name}"))?;
        let mtu = i32::from_ne_bytes([r.data[0], r.data[1], r.data[2], r.data[3]]) as u32;
        out.push(Link {
            index: i.index(),
            name,
            flags,
            mtu,
        });
    }
    Ok(out)
}

/// Sets link `name`'s flags and MTU.
pub fn configure(name: &str, flags: u32, mtu: u32) -> io::Result<()> {
    let s = socket()?;
    let mut r = ifreq(name)?;
    r.data[..4].copy_from_slice(&(mtu as i32).to_ne_bytes());
    ioctl(&s, libc::SIOCSIFMTU, &mut r, &format!("SIOCSIFMTU {name}"))?;
    let mut r = ifreq(name)?;
    r.data[..2].copy_from_slice(&(flags as u16).to_ne_bytes());
    ioctl(
        &s,
        libc::SIOCSIFFLAGS,
        &mut r,
        &format!("SIOCSIFFLAGS {name}"),
    )
}

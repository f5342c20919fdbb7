//! Planned addresses ([`Target`]) as the kernel takes them, and binding
//! or connecting from the directory a relative name was bound in.

use super::plan::Target;
use crate::error::{Error, Result};
use crate::model::unix::display_name;
use crate::restore::error::{FileError, On};
use nix::sys::socket::{SockType, UnixAddr};

/// A socket address and the directory a relative path is resolved from.
pub struct Addr {
    pub addr: UnixAddr,
    pub dir: Option<String>,
}

impl Addr {
    /// The path bound or connected to (relative ones joined to their
    /// directory); None for an abstract name.
    pub fn full_path(&self) -> Option<std::path::PathBuf> {
        let p = self.addr.path()?;
        Some(match &self.dir {
            Some(d) => std::path::Path::new(d).join(p),
            None => p.to_path_buf(),
        })
    }
}

/// The kernel address of a planned target (the planner checked it).
pub fn of(t: &Target, ino: u32) -> Result<Addr> {
    let bad = |source| FileError::NixArg {
        on: On::Unix(ino),
        what: "bad name",
        arg: display_name(&t.name),
        source,
    };
    if t.name.first() == Some(&0) {
        return Ok(Addr {
            addr: UnixAddr::new_abstract(&t.name[1..]).map_err(bad)?,
            dir: None,
        });
    }
    let end = t.name.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let path = std::ffi::OsStr::from_bytes(&t.name[..end]);
    Ok(Addr {
        addr: UnixAddr::new(path).map_err(bad)?,
        dir: t.dir.clone(),
    })
}

use std::os::unix::ffi::OsStrExt;

/// Runs `f` with the working directory set to `dir` (for relative names).
pub fn in_dir<T>(dir: Option<&str>, f: impl FnOnce() -> nix::Result<T>) -> Result<nix::Result<T>> {
    let Some(d) = dir else { return Ok(f()) };
    let old = std::env::current_dir().map_err(|e| Error::io("getcwd", e))?;
    std::env::set_current_dir(d).map_err(|source| FileError::Chdir {
        dir: d.into(),
        source,
    })?;
    let r = f();
    std::env::set_current_dir(&old).map_err(|source| FileError::Chdir { dir: old, source })?;
    Ok(r)
}

/// Whether a socket is bound to the file at `addr`: a datagram socket
/// connects to a live datagram socket and is refused with EPROTOTYPE by
/// a live socket of another type, without a packet or a connection
/// either way; a file no socket holds refuses with ECONNREFUSED.
/// Anything else is taken as live (never a takeover).
pub fn bound_at(addr: &UnixAddr) -> nix::Result<bool> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag};
    let probe = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let r = connect(std::os::fd::AsRawFd::as_raw_fd(&probe), addr);
    Ok(!matches!(
        r,
        Err(nix::errno::Errno::ECONNREFUSED | nix::errno::Errno::ENOENT)
    ))
}

/// The kernel's socket type for an image's type number (the planner
/// refused any other).
pub fn sock_type(t: u32) -> SockType {
    match t {
        crate::model::unix::SOCK_DGRAM => SockType::Datagram,
        crate::model::unix::SOCK_SEQPACKET => SockType::SeqPacket,
        _ => SockType::Stream,
    }
}

//! The socket options every family records alike (`sk_opts_entry`):
//! buffer sizes, timeouts, SO_PASSCRED, SO_MARK, SO_PRIORITY,
//! SO_RCVLOWAT, SO_BROADCAST, SO_DONTROUTE, SO_NO_CHECK, SO_OOBINLINE,
//! SO_LINGER, SO_BINDTODEVICE and the classic BPF filter, set again on
//! a socket the restore made (before its bind).

use super::error::{FileError, On};
use crate::error::Result;
use crate::image::pb;
use nix::sys::socket as so;
use std::os::fd::{AsFd, OwnedFd};

/// Attaches the socket filter of `o`, if it has one.
pub fn set_filter(fd: &OwnedFd, o: &pb::SkOptsEntry, on: On) -> Result<()> {
    if o.so_filter.is_empty() {
        return Ok(());
    }
    let prog: Vec<_> = o
        .so_filter
        .iter()
        .map(|&v| crate::model::sockfilter::unpack(v))
        .collect();
    crate::sys::sockopt::attach_filter(fd.as_fd(), &prog).map_err(|source| {
        FileError::Io {
            on,
            what: "SO_ATTACH_FILTER",
            source,
        }
        .into()
    })
}

/// Sets the options of `o` that differ from a new socket's, and its
/// filter.
pub fn set(fd: &OwnedFd, o: &pb::SkOptsEntry, on: On) -> Result<()> {
    set_filter(fd, o, on.clone())?;
    use nix::sys::socket::sockopt;
    let err = |what, source| FileError::Nix {
        on: on.clone(),
        what,
        source,
    };
    // The kernel doubles what is set; the images hold the doubled value.
    if o.so_sndbuf != 212992 && o.so_sndbuf >= 4608 {
        so::setsockopt(fd, sockopt::SndBufForce, &(o.so_sndbuf as usize / 2))
            .map_err(|e| err("set SO_SNDBUF", e))?;
    }
    if o.so_rcvbuf != 212992 && o.so_rcvbuf >= 2304 {
        so::setsockopt(fd, sockopt::RcvBufForce, &(o.so_rcvbuf as usize / 2))
            .map_err(|e| err("set SO_RCVBUF", e))?;
    }
    if o.so_snd_tmo_sec != 0 || o.so_snd_tmo_usec != 0 {
        let tv = nix::sys::time::TimeVal::new(o.so_snd_tmo_sec as i64, o.so_snd_tmo_usec as i64);
        so::setsockopt(fd, sockopt::SendTimeout, &tv).map_err(|e| err("set SO_SNDTIMEO", e))?;
    }
    if o.so_rcv_tmo_sec != 0 || o.so_rcv_tmo_usec != 0 {
        let tv = nix::sys::time::TimeVal::new(o.so_rcv_tmo_sec as i64, o.so_rcv_tmo_usec as i64);
        so::setsockopt(fd, sockopt::ReceiveTimeout, &tv).map_err(|e| err("set SO_RCVTIMEO", e))?;
    }
    if o.so_passcred == Some(true) {
        so::setsockopt(fd, sockopt::PassCred, &true).map_err(|e| err("set SO_PASSCRED", e))?;
    }
    if let Some(m) = o.so_mark.filter(|&m| m != 0) {
        so::setsockopt(fd, sockopt::Mark, &m).map_err(|e| err("set SO_MARK", e))?;
    }
    // Both were recorded and CRIU 4.2 sets them again; a receiver that
    // waits for SO_RCVLOWAT bytes would otherwise wake for every byte.
    let int = |what, opt, v: u32| {
        crate::sys::sockopt::set_int(fd.as_fd(), libc::SOL_SOCKET, opt, v as i32).map_err(
            |source| FileError::Io {
                on: on.clone(),
                what,
                source,
            },
        )
    };
    if let Some(p) = o.so_priority.filter(|&p| p != 0) {
        int("set SO_PRIORITY", libc::SO_PRIORITY, p)?;
    }
    if let Some(l) = o.so_rcvlowat.filter(|&l| l > 1) {
        int("set SO_RCVLOWAT", libc::SO_RCVLOWAT, l)?;
    }
    // The flags CRIU 4.2 sets again too (recorded for every family; set
    // where they were on).
    for (v, opt, what) in [
        (o.so_broadcast, libc::SO_BROADCAST, "set SO_BROADCAST"),
        (o.so_dontroute, libc::SO_DONTROUTE, "set SO_DONTROUTE"),
        (o.so_no_check, libc::SO_NO_CHECK, "set SO_NO_CHECK"),
    ] {
        if v == Some(true) {
            int(what, opt, 1)?;
        }
    }
    if let Some(v) = o.so_oobinline.filter(|&v| v != 0) {
        int("set SO_OOBINLINE", libc::SO_OOBINLINE, v)?;
    }
    if let Some(secs) = o.so_linger {
        so::setsockopt(
            fd,
            sockopt::Linger,
            &libc::linger {
                l_onoff: 1,
                l_linger: secs as i32,
            },
        )
        .map_err(|e| err("set SO_LINGER", e))?;
    }
    if let Some(dev) = o.so_bound_dev.as_deref().filter(|d| !d.is_empty()) {
        crate::sys::sockopt::set_bytes(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_BINDTODEVICE,
            dev.as_bytes(),
        )
        .map_err(|source| FileError::IoArg {
            on: on.clone(),
            what: "SO_BINDTODEVICE",
            arg: dev.to_string(),
            source,
        })?;
    }
    Ok(())
}

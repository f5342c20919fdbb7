//! `crit service --address PATH`: CRIU's service mode. It listens on a
//! SOCK_SEQPACKET unix socket at PATH (mode 0666, as CRIU makes it) and
//! serves each connection as `crit swrk` would (which refuses a client
//! that is neither root nor the service's user), in a process of its own
//! (one per client, as CRIU forks one), so one client's dump never waits
//! for another's. With `-d` it runs in the background once it listens
//! ([`crate::detach`]); `--pidfile` names its pid.

use crate::error::{Error, Result};
use nix::sys::socket::{
    bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

/// Listens at `address` and serves clients until killed.
pub fn serve(
    address: &Path,
    daemon: bool,
    pidfile: Option<&Path>,
    log_file: Option<&Path>,
) -> Result<()> {
    let fail = |what: &'static str| {
        move |e: nix::Error| Error::FileOp {
            path: address.to_path_buf(),
            what,
            source: e.into(),
        }
    };
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(fail("socket"))?;
    // A socket file left by an earlier service is taken over, as CRIU does.
    if std::fs::symlink_metadata(address).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        let _ = std::fs::remove_file(address);
    }
    bind(
        sock.as_raw_fd(),
        &UnixAddr::new(address).map_err(fail("address"))?,
    )
    .map_err(fail("bind"))?;
    // Until it is ready, a failure (chmod, -o, the pidfile) removes the
    // socket file: nobody would ever answer there.
    let unlink = Unlink(address);
    std::fs::set_permissions(address, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(|source| Error::FileOp {
            path: address.to_path_buf(),
            what: "chmod",
            source,
        })?;
    listen(&sock, Backlog::new(16).map_err(fail("listen"))?).map_err(fail("listen"))?;
    crate::detach::ready(&crate::detach::Ready {
        daemon,
        pidfile,
        status_fd: None,
        log_file,
    })?;
    std::mem::forget(unlink);
    // Workers are reaped as they end; their own children are theirs.
    crate::sys::thread::spawn(|| loop {
        if nix::sys::wait::wait().is_err() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    })
    .map_err(|e| Error::io("the service's reaper of workers", e))?;
    loop {
        let conn = crate::sys::sock::accept(sock.as_raw_fd()).map_err(|source| Error::FileOp {
            path: address.to_path_buf(),
            what: "accept",
            source,
        })?;
        if let Err(e) = start_worker(&conn) {
            crate::detach::say(&format!("crit service: {e}"));
        }
    }
}

/// Removes the socket file when dropped.
struct Unlink<'a>(&'a Path);

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// `crit swrk N` on the accepted connection.
fn start_worker(conn: &OwnedFd) -> std::io::Result<()> {
    let theirs = crate::sys::sock::dup_inheritable(conn.as_raw_fd())?;
    std::process::Command::new("/proc/self/exe")
        .arg("swrk")
        .arg(theirs.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .spawn()?;
    Ok(())
}

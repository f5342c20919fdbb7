//! What the tests need from the host: programs (installed with apt when
//! missing), System V segments to clean up, socket inodes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A program on PATH or in the sbin directories.
pub fn find(prog: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(str::to_string)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin", "/bin"].map(String::from))
        .map(|d| Path::new(&d).join(prog))
        .find(|p| p.is_file())
}

/// The program's path, installing its Debian package first if it is
/// missing; the test fails, naming the package, if that does not work.
pub fn require(prog: &str, package: &str) -> PathBuf {
    if let Some(p) = find(prog) {
        return p;
    }
    // One install at a time: tests may ask together.
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _g = APT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = find(prog) {
        return p;
    }
    let installed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {package}"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    match find(prog) {
        Some(p) if installed => p,
        _ => panic!(
            "{prog} is not installed and apt-get could not install it; this test needs it: \
             install it with `apt-get install -y {package}`"
        ),
    }
}

/// A System V shared memory segment, removed when the test ends.
pub struct ShmSegment(pub i32);

impl Drop for ShmSegment {
    fn drop(&mut self) {
        let _ = crit::sys::ipc::Kind::Shm.remove(self.0);
    }
}

/// The inode of the socket at `fd` of `pid`.
pub fn sock_ino(pid: i32, fd: i32) -> u32 {
    let l = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .unwrap_or_else(|e| panic!("pid {pid} fd {fd}: {e}"));
    let l = l.to_string_lossy();
    l.strip_prefix("socket:[")
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("pid {pid} fd {fd} is {l}, not a socket"))
}

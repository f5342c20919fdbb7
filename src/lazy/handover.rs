//! How a restore hands its tasks' userfaultfds to a lazy-pages daemon,
//! CRIU 4.2's way (its criu/uffd.c), so that crit and CRIU pair either
//! way: the daemon listens on `lazy-pages.socket` (SOCK_STREAM) in the
//! images directory; the restore connects, and for every task of the
//! tree sends its pid in the images (a native-endian i32; negated for a
//! zombie, with nothing after it), then the descriptor by SCM_RIGHTS on
//! one byte; once the tree runs it sends the word
//! [`RESTORE_FINISHED`].

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The socket's name, in the images directory.
pub const SOCKET: &str = "lazy-pages.socket";
/// "ReSTore Finished".
pub const RESTORE_FINISHED: u32 = 0x5253_5446;

/// An error of the connection between restore and daemon: `who`
/// ("the restore", "the lazy-pages daemon") is named when its end went
/// away, instead of Rust's "failed to fill whole buffer".
fn io<'a>(
    path: &'a Path,
    what: &'static str,
    who: &'static str,
) -> impl Fn(std::io::Error) -> Error + 'a {
    move |source| Error::FileOp {
        path: path.to_path_buf(),
        what,
        source: match is_closed(&source) {
            true => std::io::Error::new(source.kind(), format!("{who} closed the connection")),
            false => source,
        },
    }
}

/// Whether `e` says that the other end of a connection went away.
pub fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), UnexpectedEof | BrokenPipe | ConnectionReset)
}

const DAEMON: &str = "the lazy-pages daemon";
const RESTORE: &str = "the restore";

/// The restore's side.
pub struct Sender {
    sock: UnixStream,
    path: PathBuf,
}

impl Sender {
    /// Connects to the daemon of images directory `dir`.
    pub fn connect(dir: &Path) -> Result<Sender> {
        let path = dir.join(SOCKET);
        let sock = UnixStream::connect(&path).map_err(io(
            &path,
            "connecting to the lazy-pages daemon (crit lazy-pages -D DIR)",
            DAEMON,
        ))?;
        Ok(Sender { sock, path })
    }

    /// Hands over the userfaultfd of task `pid` (None: a zombie).
    pub fn send(&mut self, pid: i32, uffd: Option<&OwnedFd>) -> Result<()> {
        let p = &self.path;
        let word = if uffd.is_some() { pid } else { -pid };
        self.sock.write_all(&word.to_ne_bytes()).map_err(io(
            p,
            "sending a pid to the lazy-pages daemon",
            DAEMON,
        ))?;
        if let Some(fd) = uffd {
            crate::sys::scm::send(&self.sock, &[0], &[fd.as_fd()]).map_err(io(
                p,
                "sending a userfaultfd to the lazy-pages daemon",
                DAEMON,
            ))?;
        }
        Ok(())
    }

    /// The tree runs: the daemon may end once every page is in.
    pub fn finished(mut self) -> Result<()> {
        let p = self.path.clone();
        self.sock
            .write_all(&RESTORE_FINISHED.to_ne_bytes())
            .map_err(io(
                &p,
                "telling the lazy-pages daemon the restore is done",
                DAEMON,
            ))
    }
}

/// What the daemon reads: one task, or the end of the restore.
pub enum Received {
    Task { pid: i32, uffd: OwnedFd },
    Zombie,
}

/// Reads the next task's pid and descriptor from `sock`.
pub fn receive(sock: &mut UnixStream, path: &Path) -> Result<Received> {
    let mut b = [0u8; 4];
    sock.read_exact(&mut b)
        .map_err(io(path, "reading a pid from the restore", RESTORE))?;
    let pid = i32::from_ne_bytes(b);
    if pid < 0 {
        return Ok(Received::Zombie);
    }
    let mut one = [0u8; 1];
    let (_, fds) = crate::sys::scm::recv(&*sock, &mut one).map_err(io(
        path,
        "reading a userfaultfd from the restore",
        RESTORE,
    ))?;
    let uffd = fds.into_iter().next().ok_or_else(|| Error::FileOp {
        path: path.to_path_buf(),
        what: "reading a userfaultfd from the restore",
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("pid {pid}: no descriptor came"),
        ),
    })?;
    Ok(Received::Task { pid, uffd })
}

/// Held by the daemon of images directory `dir` while it serves: an
/// abstract unix socket named after the directory's device and inode,
/// which the kernel frees when the daemon ends, however it ends. A
/// second daemon of the same directory would otherwise replace the
/// first one's socket file, and the restore would meet the wrong one.
pub struct Claim(#[allow(dead_code)] std::os::unix::net::UnixListener);

/// Claims `dir` for one daemon; refused while another daemon has it.
pub fn claim(dir: &Path) -> Result<Claim> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{SocketAddr, UnixListener};
    let fail = |source| Error::FileOp {
        path: dir.to_path_buf(),
        what: "claiming the images directory for this daemon",
        source,
    };
    let m = std::fs::metadata(dir).map_err(fail)?;
    let name = format!("crit-lazy-pages:{}:{}", m.dev(), m.ino());
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).map_err(fail)?;
    match UnixListener::bind_addr(&addr) {
        Ok(l) => Ok(Claim(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(fail(std::io::Error::new(
            e.kind(),
            "another crit lazy-pages serves it",
        ))),
        Err(e) => Err(fail(e)),
    }
}

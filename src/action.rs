//! CRIU's action scripts: the points of a dump or a restore that its
//! caller hears about, in CRIU 4.2's order.
//!
//! - dump: pre-dump (before the freeze), network-lock (tree frozen, when
//!   it has a network namespace of its own), post-dump (every image
//!   written, the tree still frozen; a refusal fails the dump and the
//!   tree runs on), network-unlock (own network namespace, when the tree
//!   runs on: `-R` or a failure);
//! - restore: pre-restore (first), orphan-pts-master (with the master of
//!   a pty whose slave the tree holds, as its files are opened: before
//!   the tasks exist, where CRIU sends it a little later), setup-namespaces
//!   (with the root's pid) and post-setup-namespaces (a tree with
//!   namespaces of its own), post-restore (with the root's pid, every
//!   task rebuilt and still stopped), network-unlock (own network
//!   namespace), pre-resume, post-resume (the tree runs). A refusal fails
//!   the restore, but at the last three (CRIU only logs them).
//!
//! Where they go: `crit swrk` hands the engine it runs one end of a
//! socket pair (`--notify-fd N`) and turns each message into a NOTIFY to
//! its RPC client; `--action-script CMD` runs CMD with `sh -c`, as CRIU
//! does, with CRTOOLS_SCRIPT_ACTION, CRTOOLS_IMAGE_DIR and, when there is
//! a pid, CRTOOLS_INIT_PID. A pty master goes to the service, or to a
//! `--console-socket` (runc's protocol: one SCM_RIGHTS message).
//!
//! The wire between engine and service (SOCK_SEQPACKET): "NAME PID" in
//! one packet, with orphan-pts-master's fd as SCM_RIGHTS; the answer is
//! one byte, 1 to go on and 0 to stop.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// The points, by CRIU's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    PreDump,
    NetworkLock,
    PostDump,
    NetworkUnlock,
    PreRestore,
    OrphanPtsMaster,
    SetupNamespaces,
    PostSetupNamespaces,
    PostRestore,
    PreResume,
    PostResume,
    /// A lazy dump serves its pages (CRIU's status_ready).
    StatusReady,
}

impl Script {
    pub const ALL: [Script; 12] = [
        Script::PreDump,
        Script::NetworkLock,
        Script::PostDump,
        Script::NetworkUnlock,
        Script::PreRestore,
        Script::OrphanPtsMaster,
        Script::SetupNamespaces,
        Script::PostSetupNamespaces,
        Script::PostRestore,
        Script::PreResume,
        Script::PostResume,
        Script::StatusReady,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Script::PreDump => "pre-dump",
            Script::NetworkLock => "network-lock",
            Script::PostDump => "post-dump",
            Script::NetworkUnlock => "network-unlock",
            Script::PreRestore => "pre-restore",
            Script::OrphanPtsMaster => "orphan-pts-master",
            Script::SetupNamespaces => "setup-namespaces",
            Script::PostSetupNamespaces => "post-setup-namespaces",
            Script::PostRestore => "post-restore",
            Script::PreResume => "pre-resume",
            Script::PostResume => "post-resume",
            Script::StatusReady => "status-ready",
        }
    }

    pub fn by_name(name: &str) -> Option<Script> {
        Script::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Why the caller was not told, or said no.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{script} notification: {source}")]
    Channel {
        script: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{script} notification: the caller said no")]
    Refused { script: &'static str },
    #[error("action script for {script}: {why}")]
    Command { script: &'static str, why: String },
    #[error("the master of pty {index}: {why}")]
    NoMasterSink { index: u32, why: String },
    #[error("--console-socket {}: {source}", path.display())]
    ConsoleSocket {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Where a dump or restore reports its points.
#[derive(Default, Debug)]
pub struct Notifier {
    /// The service's end (`--notify-fd`).
    channel: Option<OwnedFd>,
    /// `--action-script` commands.
    commands: Vec<String>,
    /// `--console-socket`: where a pty master goes without a service.
    console: Option<PathBuf>,
    /// CRTOOLS_IMAGE_DIR for the commands.
    dir: PathBuf,
}

impl Notifier {
    /// A notifier for the images in `dir`: to the service on fd
    /// `channel` (taken over), to `commands`, and pty masters to
    /// `console`.
    pub fn new(
        dir: &Path,
        channel: Option<RawFd>,
        commands: Vec<String>,
        console: Option<PathBuf>,
    ) -> io::Result<Notifier> {
        let channel = match channel {
            Some(n) => Some(crate::sys::sock::take_handed(n)?),
            None => None,
        };
        Ok(Notifier {
            channel,
            commands,
            console,
            dir: dir.to_path_buf(),
        })
    }

    /// Says `script` was reached (`pid`: the root's, as crit sees it, for
    /// the points that carry one) and waits for the go.
    pub fn tell(&self, script: Script, pid: Option<i32>) -> Result<(), ActionError> {
        if let Some(ch) = &self.channel {
            ask(ch.as_fd(), script, pid, None)?;
        }
        for c in &self.commands {
            self.run(c, script, pid)?;
        }
        Ok(())
    }

    /// Whether anyone listens (a service or a command).
    pub fn is_active(&self) -> bool {
        self.channel.is_some() || !self.commands.is_empty()
    }

    /// Like [`Notifier::tell`] where a refusal changes nothing (CRIU only
    /// logs it): the error, if any, to log.
    pub fn tell_only(&self, script: Script, pid: Option<i32>) -> Option<ActionError> {
        self.tell(script, pid).err()
    }

    /// Whether a pty master made at restore has somewhere to go.
    pub fn takes_masters(&self) -> bool {
        self.channel.is_some() || self.console.is_some()
    }

    /// Hands the master of pty `index` over: orphan-pts-master to the
    /// service, or to the console socket.
    pub fn hand_master(&self, index: u32, master: BorrowedFd) -> Result<(), ActionError> {
        let script = Script::OrphanPtsMaster;
        if let Some(ch) = &self.channel {
            return ask(ch.as_fd(), script, None, Some(master));
        }
        if let Some(path) = &self.console {
            return send_to_console(path, master).map_err(|source| ActionError::ConsoleSocket {
                path: path.clone(),
                source,
            });
        }
        Err(ActionError::NoMasterSink {
            index,
            why: "nowhere to hand it (restore through crit swrk, or with --console-socket)".into(),
        })
    }

    fn run(&self, cmd: &str, script: Script, pid: Option<i32>) -> Result<(), ActionError> {
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg(cmd)
            .env("CRTOOLS_SCRIPT_ACTION", script.name())
            .env("CRTOOLS_IMAGE_DIR", &self.dir)
            .stdin(std::process::Stdio::null());
        if let Some(p) = pid {
            c.env("CRTOOLS_INIT_PID", p.to_string());
        }
        let fail = |why: String| ActionError::Command {
            script: script.name(),
            why,
        };
        let st = c.status().map_err(|e| fail(format!("{cmd}: {e}")))?;
        if !st.success() {
            return Err(fail(format!("{cmd}: {st}")));
        }
        Ok(())
    }
}

/// Sends one point over the channel and waits for the answer.
fn ask(
    ch: BorrowedFd,
    script: Script,
    pid: Option<i32>,
    fd: Option<BorrowedFd>,
) -> Result<(), ActionError> {
    let name = script.name();
    let fail = |source| ActionError::Channel {
        script: name,
        source,
    };
    let msg = format!("{name} {}", pid.unwrap_or(0));
    let fds: Vec<BorrowedFd> = fd.into_iter().collect();
    crate::sys::scm::send(ch, msg.as_bytes(), &fds).map_err(fail)?;
    let mut b = [0u8; 1];
    let (n, _) = crate::sys::scm::recv(ch, &mut b).map_err(fail)?;
    match (n, b[0]) {
        (1, 1) => Ok(()),
        (1, _) => Err(ActionError::Refused { script: name }),
        _ => Err(fail(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the service went away",
        ))),
    }
}

/// One point as the service reads it off the channel.
pub struct Heard {
    pub script: Script,
    pub pid: i32,
    pub fd: Option<OwnedFd>,
}

/// The service's side: the next point the engine reached (None: the
/// engine closed the channel, its run is over).
pub fn hear(ch: BorrowedFd) -> io::Result<Option<Heard>> {
    let mut buf = [0u8; 128];
    let (n, mut fds) = crate::sys::scm::recv(ch, &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&buf[..n]);
    let (name, pid) = text.split_once(' ').unwrap_or((&text, "0"));
    let script = Script::by_name(name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an unknown action point {name:?} from the engine"),
        )
    })?;
    Ok(Some(Heard {
        script,
        pid: pid.parse().unwrap_or(0),
        fd: fds.pop(),
    }))
}

/// The service's answer to the point it heard last.
pub fn answer(ch: BorrowedFd, go: bool) -> io::Result<()> {
    crate::sys::scm::send(ch, &[u8::from(go)], &[])
}

/// runc's console socket protocol: connect, send the fd with its name.
fn send_to_console(path: &Path, master: BorrowedFd) -> io::Result<()> {
    let s = std::os::unix::net::UnixStream::connect(path)?;
    crate::sys::scm::send(s.as_fd(), b"orphan-pts-master", &[master])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Script::ALL {
            assert_eq!(Script::by_name(s.name()), Some(s));
        }
        assert_eq!(Script::by_name("query-ext-files"), None);
    }

    #[test]
    fn a_point_travels_to_the_service_and_back() {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let n = Notifier {
            channel: Some(a),
            ..Default::default()
        };
        let service = std::thread::spawn(move || {
            let h = hear(b.as_fd()).unwrap().unwrap();
            answer(b.as_fd(), true).unwrap();
            let second = hear(b.as_fd()).unwrap().unwrap();
            answer(b.as_fd(), false).unwrap();
            (h.script, h.pid, second.script, second.fd.is_some())
        });
        n.tell(Script::PostRestore, Some(42)).unwrap();
        let null = std::fs::File::open("/dev/null").unwrap();
        let e = n.hand_master(0, null.as_fd()).unwrap_err();
        assert!(matches!(e, ActionError::Refused { .. }), "{e}");
        let (s, pid, s2, had_fd) = service.join().unwrap();
        assert_eq!((s, pid), (Script::PostRestore, 42));
        assert_eq!(s2, Script::OrphanPtsMaster);
        assert!(had_fd);
    }
}

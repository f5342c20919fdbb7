//! `-d`, `--pidfile`, `--status-fd` and `-o` of crit's servers
//! (`page-server`, `lazy-pages`, `service`), CRIU's way: a server first
//! sets up all that can fail (binds and listens, opens its images,
//! connects), then calls [`ready`]. With `-d` that forks; the command
//! itself returns only once the daemon has written its pidfile: 0 then,
//! or 1 with the daemon's one-line error if it failed before. A pipe
//! carries the answer: one zero byte for ready, or the error's text.
//!
//! With `-o FILE` what the server says once it is ready (its summary,
//! its error if it fails later) is appended to FILE instead of stderr,
//! which a daemon has on /dev/null otherwise. Errors before that are
//! the command's own and stay on its stderr.

use crate::error::{Error, Result};
use crate::sys::clone::{fork_alone, ForkResult};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

/// How a server says that it is ready.
pub struct Ready<'a> {
    /// `-d`: serve in the background, in a session of its own, with
    /// stdin, stdout and stderr on /dev/null.
    pub daemon: bool,
    /// `--pidfile`: gets the pid of the process that serves.
    pub pidfile: Option<&'a Path>,
    /// `--status-fd`: gets one zero byte once ready, then is closed.
    pub status_fd: Option<i32>,
    /// `-o`: where the server's stdout and stderr go once it is ready.
    pub log_file: Option<&'a Path>,
}

/// To be called once the server listens. Without `daemon`: writes the
/// pidfile, then the status byte. With it: forks; returns Ok in the
/// daemon once it did the same, and never returns in the calling
/// process, which exits 0 once the daemon is ready, else 1 with the
/// daemon's error (so that whoever started the command can rely on
/// its exit status and on the pidfile).
pub fn ready(r: &Ready) -> Result<()> {
    // Whatever can fail is done before the fork, where its error is
    // the command's own.
    let status = r.status_fd.map(take_status).transpose()?;
    let log = r.log_file.map(open_log).transpose()?;
    if !r.daemon {
        // The pidfile's error is still the command's; once the status
        // byte is out, what the server says is already in the log.
        write_pidfile(r.pidfile)?;
        if let Some(log) = &log {
            redirect(log).map_err(fail("output to the log file"))?;
        }
        return send_status(status);
    }
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|source| Error::FileOp {
            path: "/dev/null".into(),
            what: "opening for the daemon's stdio",
            source,
        })?;
    let (rd, wr) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io {
        what: "a pipe to the daemon".into(),
        source: e.into(),
    })?;
    let forked = fork_alone().map_err(|source| Error::Io {
        what: "starting the daemon".into(),
        source,
    })?;
    match forked {
        ForkResult::Parent(pid) => {
            drop(wr);
            wait_ready(rd, pid)
        }
        ForkResult::Child => {
            drop(rd);
            let r = detach(&null, log.as_ref().unwrap_or(&null))
                .and_then(|()| announce(r.pidfile, status));
            let mut pipe = std::fs::File::from(wr);
            match &r {
                Ok(()) => {
                    let _ = pipe.write_all(&[0]);
                }
                Err(e) => {
                    let _ = pipe.write_all(e.to_string().replace('\n', " ").as_bytes());
                    // Left open until this process exits, which the
                    // calling process waits for: by then the server has
                    // cleaned up after itself (its socket file).
                    std::mem::forget(pipe);
                }
            }
            r
        }
    }
}

/// `--status-fd N`, taken as crit's own.
fn take_status(fd: i32) -> Result<OwnedFd> {
    crate::sys::sock::take_handed(fd).map_err(|source| Error::Io {
        what: format!("--status-fd {fd}"),
        source,
    })
}

/// The pidfile, then the status byte: once a caller hears either, the
/// pid is there to be read.
fn announce(pidfile: Option<&Path>, status: Option<OwnedFd>) -> Result<()> {
    write_pidfile(pidfile)?;
    send_status(status)
}

fn write_pidfile(pidfile: Option<&Path>) -> Result<()> {
    let Some(p) = pidfile else { return Ok(()) };
    write_pid(p, std::process::id()).map_err(|source| Error::FileOp {
        path: p.to_path_buf(),
        what: "writing the pidfile",
        source,
    })
}

/// `pid` into pidfile `path` (a server's, or a restore's root). Opened
/// without blocking: a FIFO nobody reads fails (ENXIO) instead of
/// holding the command, and a restored tree, forever.
pub fn write_pid(path: &Path, pid: u32) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // Blocking again for the write (a FIFO with a slow reader).
    fcntl(&f, FcntlArg::F_SETFL(OFlag::empty()))?;
    f.write_all(format!("{pid}\n").as_bytes())
}

fn send_status(status: Option<OwnedFd>) -> Result<()> {
    let Some(f) = status else { return Ok(()) };
    std::fs::File::from(f)
        .write_all(&[0])
        .map_err(|source| Error::Io {
            what: "--status-fd: writing".into(),
            source,
        })
}

/// `-o FILE`: appended to, made private (0600) if new, since a server's
/// messages name the paths and peers it serves. Opened non-blocking: a
/// FIFO nobody reads is refused (ENXIO) rather than hanging the
/// command before it says anything; writes then block again. Also
/// restore's `-o`.
pub fn open_log(path: &Path) -> Result<std::fs::File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::unix::fs::OpenOptionsExt;
    let fail = |source| Error::FileOp {
        path: path.to_path_buf(),
        what: "opening the log file",
        source,
    };
    let f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(fail)?;
    fcntl(&f, FcntlArg::F_SETFL(OFlag::O_APPEND)).map_err(|e| fail(std::io::Error::from(e)))?;
    Ok(f)
}

/// One line to stderr (the log file once a server is ready), without
/// eprintln!'s panic if it cannot be written (`-o /dev/full`, a full
/// disk, `2>/dev/full`): a message is not worth the command's exit
/// status.
pub fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn fail(what: &'static str) -> impl Fn(nix::Error) -> Error {
    move |e| Error::Io {
        what: format!("daemon: {what}"),
        source: e.into(),
    }
}

/// In the daemon: a session of its own (no terminal's hangup reaches
/// it), stdin on /dev/null and stdout and stderr on `out` (/dev/null
/// or the log file): whoever waits for the command's output is not
/// kept waiting by the daemon.
fn detach(null: &std::fs::File, out: &std::fs::File) -> Result<()> {
    nix::unistd::setsid().map_err(fail("setsid"))?;
    nix::unistd::dup2_stdin(null).map_err(fail("stdin to /dev/null"))?;
    redirect(out).map_err(fail("stdout and stderr"))
}

fn redirect(out: &std::fs::File) -> nix::Result<()> {
    nix::unistd::dup2_stdout(out)?;
    nix::unistd::dup2_stderr(out)
}

/// In the calling process: exits 0 once the daemon `pid` is ready, 1
/// with its error otherwise.
fn wait_ready(rd: OwnedFd, pid: i32) -> ! {
    let mut said = Vec::new();
    let _ = std::fs::File::from(rd).read_to_end(&mut said);
    if said == [0] {
        std::process::exit(0);
    }
    if said.is_empty() {
        let how = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => format!("exited with status {c}"),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => format!("was killed by {s}"),
            _ => "ended".into(),
        };
        say(&format!(
            "crit: the daemon (pid {pid}) {how} before it was ready"
        ));
    } else {
        say(&format!("crit: {}", String::from_utf8_lossy(&said)));
    }
    std::process::exit(1);
}

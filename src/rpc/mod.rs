//! CRIU's RPC service, so container managers (runc, crun, podman) use
//! crit as their engine: `crit swrk FD` (also as `criu swrk FD` through a
//! symlink named criu) serves `criu_req`s on the SOCK_SEQPACKET socket
//! FD, one message per packet, until the client closes it or a request
//! without `keep_open` is done.
//!
//! Requests: VERSION (answers 4.2, as the managers compare numbers),
//! CHECK, FEATURE_CHECK (memory tracking when this kernel has what
//! crate::dump::track needs; no lazy pages or pidfd store), PRE_DUMP, DUMP
//! and RESTORE (run as `crit pre-dump` / `crit dump` / `crit restore -d`
//! child processes with the options of [`opts`], `parent_img` and
//! `track_mem` among them; every set field is honoured or refused by
//! name), NOTIFY for `notify_scripts`
//! (pre-dump, post-dump, pre-restore, post-restore with the root's pid),
//! WAIT_PID. The images and work directories are the client's fds,
//! reached as /proc/PEER/fd/N with the peer from SO_PEERCRED; logs go to
//! the work directory (`dump.log`, `restore.log`). `inherit_fd` numbers
//! are crit's own fds (the client passes them when it starts crit).

pub mod opts;
pub mod service;

use crate::error::{Error, Result};
use crate::image::rpc_pb::{
    CriuDumpResp, CriuFeatures, CriuNotify, CriuOpts, CriuReq, CriuReqType, CriuResp,
    CriuRestoreResp, CriuVersion,
};
use prost::Message;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;

/// Serves requests on `fd` until the client is done.
pub fn swrk(fd: RawFd) -> Result<()> {
    let owned = crate::sys::sock::dup_raw(fd).map_err(|source| Error::SwrkFd { fd, source })?;
    let sock = owned.as_fd();
    let (peer, uid) = peer_of(sock)?;
    // A service runs as root and dumps, kills and restores whatever it is
    // asked to: only root and its own user may ask (CRIU 4.2 serves
    // anyone who can connect to its 0666 socket).
    let ours = nix::unistd::geteuid().as_raw();
    if uid != 0 && uid != ours {
        let e = Error::SwrkPeer {
            pid: peer,
            uid,
            ours,
        };
        if let Ok(Some(req)) = recv(sock) {
            let _ = send(sock, &failed(req.r#type, &e.to_string(), libc::EPERM));
        }
        return Err(e);
    }
    loop {
        let Some(req) = recv(sock)? else {
            return Ok(());
        };
        let keep = req.keep_open == Some(true);
        let resp = serve(sock, peer, &req);
        send(sock, &resp)?;
        if !keep || req.r#type == CriuReqType::Check as i32 {
            return Ok(());
        }
    }
}

/// The client's pid and uid (SO_PEERCRED).
fn peer_of(sock: BorrowedFd) -> Result<(i32, u32)> {
    nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)
        .map(|c| (c.pid(), c.uid()))
        .map_err(|e| Error::io("swrk: SO_PEERCRED", e.into()))
}

/// One request, or None when the client closed the socket.
fn recv(sock: BorrowedFd) -> Result<Option<CriuReq>> {
    let mut buf = vec![0u8; 1 << 20];
    let n = nix::sys::socket::recv(
        sock.as_raw_fd(),
        &mut buf,
        nix::sys::socket::MsgFlags::empty(),
    )
    .map_err(|e| Error::io("swrk: receiving a request", e.into()))?;
    if n == 0 {
        return Ok(None);
    }
    CriuReq::decode(&buf[..n])
        .map(Some)
        .map_err(|source| Error::SwrkDecode { len: n, source })
}

fn send(sock: BorrowedFd, resp: &CriuResp) -> Result<()> {
    nix::sys::socket::send(
        sock.as_raw_fd(),
        &resp.encode_to_vec(),
        nix::sys::socket::MsgFlags::empty(),
    )
    .map(|_| ())
    .map_err(|e| Error::io("swrk: sending a response", e.into()))
}

fn ok(t: CriuReqType) -> CriuResp {
    CriuResp {
        r#type: t as i32,
        success: true,
        ..Default::default()
    }
}

fn failed(t: i32, why: &str, errno: i32) -> CriuResp {
    CriuResp {
        r#type: t,
        success: false,
        cr_errno: Some(errno),
        cr_errmsg: Some(why.to_string()),
        ..Default::default()
    }
}

/// The answer to one request.
fn serve(sock: BorrowedFd, peer: i32, req: &CriuReq) -> CriuResp {
    let t = CriuReqType::try_from(req.r#type).unwrap_or(CriuReqType::Empty);
    match t {
        CriuReqType::Version => CriuResp {
            version: Some(CriuVersion {
                major_number: 4,
                minor_number: 2,
                gitid: None,
                sublevel: None,
                extra: None,
                name: Some("crit".into()),
            }),
            ..ok(t)
        },
        CriuReqType::Check => match check() {
            Ok(()) => ok(t),
            Err(missing) => failed(
                req.r#type,
                &Error::Missing(missing).to_string(),
                libc::ENOSYS,
            ),
        },
        CriuReqType::FeatureCheck => CriuResp {
            features: Some(CriuFeatures {
                // Write tracking without soft-dirty (crate::dump::track).
                mem_track: Some(crate::dump::track::probe().is_ok()),
                // A lazy restore's userfaultfd (crate::restore::lazy);
                // a lazy dump needs nothing of the kernel.
                lazy_pages: Some(crate::restore::lazy::probe().is_ok()),
                pidfd_store: Some(false),
            }),
            ..ok(t)
        },
        CriuReqType::Dump => {
            run_dump(sock, peer, req).unwrap_or_else(|e| failed(req.r#type, &e, libc::EINVAL))
        }
        CriuReqType::PreDump => {
            run_pre_dump(sock, peer, req).unwrap_or_else(|e| failed(req.r#type, &e, libc::EINVAL))
        }
        CriuReqType::Restore => {
            run_restore(sock, peer, req).unwrap_or_else(|e| failed(req.r#type, &e, libc::EINVAL))
        }
        CriuReqType::WaitPid => wait_pid(req),
        _ => failed(
            req.r#type,
            &format!("request type {} is not supported by crit", req.r#type),
            libc::ENOTSUP,
        ),
    }
}

/// What `crit check` checks: the kernel interfaces both engines need.
pub fn check() -> std::result::Result<(), Vec<&'static str>> {
    let mut missing = Vec::new();
    if !std::path::Path::new("/proc/self/map_files").exists() {
        missing.push("/proc/PID/map_files");
    }
    if !std::path::Path::new("/proc/self/ns/time").exists() {
        missing.push("time namespaces");
    }
    if !std::path::Path::new("/proc/sys/kernel/ns_last_pid").exists() {
        missing.push("/proc/sys/kernel/ns_last_pid");
    }
    if !nix::unistd::geteuid().is_root() {
        missing.push("root");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(missing)
    }
}

/// The client's directory fd `n`, as crit reaches it.
fn client_dir(
    peer: i32,
    n: Option<i32>,
    path: Option<&str>,
    what: &str,
) -> std::result::Result<PathBuf, String> {
    match (n, path) {
        (Some(n), _) if n >= 0 => {
            let p = PathBuf::from(format!("/proc/{peer}/fd/{n}"));
            if !p.is_dir() {
                return Err(format!("{what}: fd {n} of pid {peer} is not a directory"));
            }
            Ok(p)
        }
        (_, Some(p)) => Ok(PathBuf::from(p)),
        _ => Err(format!("{what}: no directory given")),
    }
}

fn dirs(peer: i32, o: &CriuOpts) -> std::result::Result<opts::Dirs, String> {
    let images = client_dir(
        peer,
        Some(o.images_dir_fd),
        o.images_dir.as_deref(),
        "images_dir_fd",
    )?;
    let work = match o.work_dir_fd {
        Some(n) => client_dir(peer, Some(n), None, "work_dir_fd")?,
        None => images.clone(),
    };
    Ok(opts::Dirs { images, work })
}

/// The client's fd `n`, opened for writing as crit reaches it.
fn client_fd(peer: i32, n: i32) -> std::result::Result<std::fs::File, String> {
    let p = format!("/proc/{peer}/fd/{n}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|e| format!("status_fd: fd {n} of pid {peer}: {e}"))
}

/// Tells the client an action point was reached (with the pty master
/// of orphan-pts-master as SCM_RIGHTS) and waits for its word: whether
/// it said go.
fn notify(sock: BorrowedFd, heard: &crate::action::Heard) -> std::result::Result<bool, String> {
    let script = heard.script.name();
    // CRIU sends a pid only where it has one to say.
    let pid = (heard.pid != 0).then_some(heard.pid);
    let n = CriuResp {
        notify: Some(CriuNotify {
            script: Some(script.into()),
            pid,
        }),
        ..ok(CriuReqType::Notify)
    };
    let fds: Vec<BorrowedFd> = heard.fd.iter().map(|f| f.as_fd()).collect();
    crate::sys::scm::send(sock, &n.encode_to_vec(), &fds)
        .map_err(|e| format!("swrk: sending the {script} notification: {e}"))?;
    match recv(sock).map_err(|e| e.to_string())? {
        Some(r) if r.r#type == CriuReqType::Notify as i32 => Ok(r.notify_success == Some(true)),
        Some(_) => Err(format!(
            "the client answered the {script} notification with another request"
        )),
        None => Err(format!("the client went away at the {script} notification")),
    }
}

/// Runs crit itself with `args`; with `scripts`, hands it a channel for
/// its action points (`--notify-fd`, crate::action) and passes each on to
/// the client as it comes; `status` goes to it as `--status-fd`. Its
/// one-line error on failure.
fn run_crit(
    sock: BorrowedFd,
    args: &[String],
    scripts: bool,
    status: Option<std::fs::File>,
) -> std::result::Result<(), String> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let mut cmd = std::process::Command::new("/proc/self/exe");
    cmd.args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut channel = None;
    let mut theirs = None;
    let status = status
        .map(|f| crate::sys::sock::dup_inheritable(f.as_raw_fd()))
        .transpose()
        .map_err(|e| format!("swrk: the engine's status fd: {e}"))?;
    if let Some(f) = &status {
        cmd.arg("--status-fd").arg(f.as_raw_fd().to_string());
    }
    if scripts {
        let (mine, other) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("swrk: a socket pair for notifications: {e}"))?;
        let inherited = crate::sys::sock::dup_inheritable(other.as_raw_fd())
            .map_err(|e| format!("swrk: the engine's end of the notifications: {e}"))?;
        cmd.arg("--notify-fd")
            .arg(inherited.as_raw_fd().to_string());
        channel = Some(mine);
        theirs = Some(inherited);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("running crit {}: {e}", args[0]))?;
    // Only the engine holds its end now: its exit ends the channel.
    drop(theirs);
    let stderr = child.stderr.take();
    let errors = crate::sys::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let errors = match errors {
        Ok(h) => h,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("running crit {}: {e}", args[0]));
        }
    };
    let served = match &channel {
        Some(ch) => serve_points(sock, ch.as_fd()),
        None => Ok(()),
    };
    let status = child
        .wait()
        .map_err(|e| format!("waiting for crit {}: {e}", args[0]))?;
    let err = errors.join().unwrap_or_default();
    // Killed, its last line is whatever it was saying, and its channel
    // broke off: neither is the error.
    if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(&status) {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string());
        return Err(format!(
            "crit {} (pid {}) was killed by {name}",
            args[0],
            child.id()
        ));
    }
    served?;
    if status.success() {
        return Ok(());
    }
    Err(err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("failed")
        .trim_start_matches("crit: ")
        .to_string())
}

/// Passes the engine's action points on to the client until the engine
/// closes its end, and the client's word back.
fn serve_points(sock: BorrowedFd, ch: BorrowedFd) -> std::result::Result<(), String> {
    while let Some(heard) =
        crate::action::hear(ch).map_err(|e| format!("swrk: the engine's notifications: {e}"))?
    {
        let go = notify(sock, &heard);
        let said = *go.as_ref().unwrap_or(&false);
        // The engine stops at a no, or when the client went away.
        let _ = crate::action::answer(ch, said);
        go?;
    }
    Ok(())
}

/// Adds `why` to the request's log in the work directory (the client
/// shows that file when a request fails).
fn log_failure(d: &opts::Dirs, o: &CriuOpts, name: &str, why: &str) {
    use std::io::Write;
    let file = d.work.join(o.log_file.as_deref().unwrap_or(name));
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
    {
        let _ = writeln!(f, "crit: {why}");
    }
}

fn run_dump(sock: BorrowedFd, peer: i32, req: &CriuReq) -> std::result::Result<CriuResp, String> {
    let o = req.opts.clone().unwrap_or_default();
    let d = dirs(peer, &o)?;
    dump_in(sock, peer, &o, &d).inspect_err(|why| log_failure(&d, &o, "dump.log", why))
}

fn run_pre_dump(
    sock: BorrowedFd,
    peer: i32,
    req: &CriuReq,
) -> std::result::Result<CriuResp, String> {
    let o = req.opts.clone().unwrap_or_default();
    let d = dirs(peer, &o)?;
    let args = opts::pre_dump_args(&o, &d, peer).map_err(|e| e.to_string());
    // CRIU's PRE_DUMP sends no notifications.
    let r = args.and_then(|args| run_crit(sock, &args, false, None));
    r.inspect_err(|why| log_failure(&d, &o, "dump.log", why))?;
    Ok(ok(CriuReqType::PreDump))
}

fn dump_in(
    sock: BorrowedFd,
    peer: i32,
    o: &CriuOpts,
    d: &opts::Dirs,
) -> std::result::Result<CriuResp, String> {
    let args = opts::dump_args(o, d, peer).map_err(|e| e.to_string())?;
    // A lazy dump's status_fd is the client's fd (runc's --status-fd).
    let status = o.status_fd.map(|n| client_fd(peer, n)).transpose()?;
    run_crit(sock, &args, o.notify_scripts == Some(true), status)?;
    // CRIU leaves its statistics in the work directory, where podman
    // looks for them.
    let stats = d.images.join("stats-dump");
    if d.work != d.images && stats.exists() {
        std::fs::rename(&stats, d.work.join("stats-dump"))
            .map_err(|e| format!("moving stats-dump to the work directory: {e}"))?;
    }
    Ok(CriuResp {
        dump: Some(CriuDumpResp {
            restored: Some(false),
        }),
        ..ok(CriuReqType::Dump)
    })
}

fn run_restore(
    sock: BorrowedFd,
    peer: i32,
    req: &CriuReq,
) -> std::result::Result<CriuResp, String> {
    let o = req.opts.clone().unwrap_or_default();
    let d = dirs(peer, &o)?;
    restore_in(sock, &o, &d).inspect_err(|why| log_failure(&d, &o, "restore.log", why))
}

fn restore_in(
    sock: BorrowedFd,
    o: &CriuOpts,
    d: &opts::Dirs,
) -> std::result::Result<CriuResp, String> {
    // The root's pid comes back through a memfd the child inherits (its
    // /proc/self/fd path as the pidfile): no file to leave behind if
    // either process is killed.
    let pidmem =
        nix::sys::memfd::memfd_create(c"crit-restore-pid", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| format!("memfd_create for the restored pid: {e}"))?;
    let pidcopy = crate::sys::sock::dup_inheritable(std::os::fd::AsRawFd::as_raw_fd(&pidmem))
        .map_err(|e| format!("a copy of the pid memfd: {e}"))?;
    let pidfile = std::path::PathBuf::from(format!("/proc/self/fd/{}", pidcopy.as_raw_fd()));
    // inherit_fd numbers are this process's fds, often its stdio (runc
    // hands the container's new stdio pipes in so): the `crit restore`
    // child gets copies at other numbers, its own stdio being crit's.
    let mut o = o.clone();
    let mut held = Vec::new();
    for i in &mut o.inherit_fd {
        let copy = crate::sys::sock::dup_inheritable(i.fd)
            .map_err(|e| format!("inherit_fd {} ({}): {e}", i.fd, i.key))?;
        i.fd = copy.as_raw_fd();
        held.push(copy);
    }
    let args = opts::restore_args(&o, d, &pidfile).map_err(|e| e.to_string())?;
    run_crit(sock, &args, o.notify_scripts == Some(true), None)?;
    drop(held);
    drop(pidcopy);
    let mut text = String::new();
    let pid: i32 = std::io::Read::read_to_string(&mut std::fs::File::from(pidmem), &mut text)
        .ok()
        .and_then(|_| text.trim().parse().ok())
        .ok_or("restore: no pid of the restored root")?;
    Ok(CriuResp {
        restore: Some(CriuRestoreResp { pid }),
        ..ok(CriuReqType::Restore)
    })
}

/// WAIT_PID: the exit status of a child of crit (a tree restored by
/// this service).
fn wait_pid(req: &CriuReq) -> CriuResp {
    let pid = req.pid.unwrap_or(0) as i32;
    match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
        Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => CriuResp {
            status: Some(code << 8),
            ..ok(CriuReqType::WaitPid)
        },
        Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => CriuResp {
            status: Some(sig as i32),
            ..ok(CriuReqType::WaitPid)
        },
        Ok(_) => failed(req.r#type, "unexpected wait status", libc::EINVAL),
        Err(e) => failed(req.r#type, &format!("waitpid {pid}: {e}"), e as i32),
    }
}

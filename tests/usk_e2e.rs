//! Unix sockets end to end, with real processes, real peers and the crit
//! binary for every step: `crit dump`, `crit edit`, `crit restore`.
//! The C side is tests/programs/usk_e2e.c (each task does one step when
//! sent SIGUSR1). The test process is a child subreaper: dumped and
//! restored tasks come back to it and are reaped by pid. Tests take the
//! restore tests' lock (restored tasks keep their dumped pids), then a
//! `kit::dump::Kit` (temp dir, C build, reaping).
//!
//! - a client of an outside peer that moved: `--ext-unix-sk=INO=NEWPATH`
//!   for stream, seqpacket and dgram; `crit edit --reconnect` then a bare
//!   `--ext-unix-sk` for stream;
//! - a client and its server both in the tree, `crit edit --external`: the
//!   client reconnects to the restored server by path, the server's old
//!   connection gives its queue, then EOF;
//! - a socketpair end whose other end the test holds: `--inherit-fd` with
//!   a fresh pair, messages both ways;
//! - refusals: exit 1, one line naming inode and option, nothing running,
//!   images unchanged.

mod kit;
use kit::host::sock_ino;

use kit::dump::{alive, my_children, ok, reap, Kit};
use nix::sys::socket::{
    self as so, AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr,
};
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// Bounded waits: a connection, a message, a result, a task gone.
const WAIT_MS: u16 = 5000;
/// How long a killed or dumped task may take to be gone.
const GONE: Duration = Duration::from_millis(WAIT_MS as u64);

use kit::crit_out as crit;

fn show(o: &Output) -> String {
    format!(
        "status {:?}, stderr: {}, stdout: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    )
}

fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Kills and reaps the tasks it holds when dropped (also on a failed
/// assertion), before the Kit reaps whatever is left.
#[derive(Default)]
struct Tasks(Vec<i32>);

impl Tasks {
    fn kill(&mut self) {
        for &p in &self.0 {
            signal(p, nix::sys::signal::Signal::SIGKILL);
        }
        let gone = reap(&self.0, GONE).is_empty();
        let left = std::mem::take(&mut self.0);
        assert!(gone || std::thread::panicking(), "{left:?} did not go");
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every file of an images directory with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for (n, b) in snapshot(from) {
        std::fs::write(to.join(n), b).unwrap();
    }
}

/// A refusal: exit status 1, one line "crit: ..." on stderr, nothing on
/// stdout. Returns the line.
fn refused(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{}", show(o));
    assert_eq!(e.lines().count(), 1, "want one line: {e}");
    assert!(e.starts_with("crit: "), "{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(o.stdout.is_empty(), "{}", show(o));
    e.trim_end().to_string()
}

fn readable(fd: &impl AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags};
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut p, WAIT_MS), Ok(1))
}

fn sock_type(ty: &str) -> SockType {
    match ty {
        "stream" => SockType::Stream,
        "seqpacket" => SockType::SeqPacket,
        "dgram" => SockType::Datagram,
        _ => panic!("{ty}"),
    }
}

/// The outside end at `path`: a listener, or a bound dgram socket.
fn outside(ty: &str, path: &Path) -> OwnedFd {
    let _ = std::fs::remove_file(path);
    let fd = so::socket(
        AddressFamily::Unix,
        sock_type(ty),
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    so::bind(fd.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    if ty != "dgram" {
        so::listen(&fd, Backlog::new(4).unwrap()).unwrap();
    }
    fd
}

fn accept_within(l: &OwnedFd, what: &str) -> OwnedFd {
    assert!(readable(l), "{what}: no connection came");
    crit::sys::sock::accept(l.as_raw_fd()).unwrap()
}

/// One message (dgram, seqpacket), or stream bytes until `want` bytes,
/// EOF or a quiet spell.
fn receive(fd: &OwnedFd, ty: &str, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.len() < want && readable(fd) {
        let n = so::recv(fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
        got.extend_from_slice(&buf[..n]);
        if n == 0 || ty != "stream" {
            break;
        }
    }
    got
}

fn send(fd: &OwnedFd, data: &[u8]) {
    let n = so::send(fd.as_raw_fd(), data, MsgFlags::MSG_NOSIGNAL).unwrap();
    assert_eq!(n, data.len());
}

/// A dumped client of an outside peer: the test still holds the peer
/// (`old`: listener or bound socket; `conn`: the accepted connection).
struct Client {
    pid: i32,
    ino: u32,
    dir: PathBuf,
    old: OwnedFd,
    conn: Option<OwnedFd>,
}

/// Starts `usk_e2e client TY OLD` against the test's own peer at `old`,
/// then dumps it with `--ext-unix-sk=INO` (the dump kills it; it is
/// reaped so that its pid is free for the restore).
fn dump_client(kit: &Kit, tasks: &mut Tasks, ty: &str) -> Client {
    let old_path = kit.path("old.sock");
    let old = outside(ty, &old_path);
    let mut prog = kit.start("usk_e2e", &["client", ty, old_path.to_str().unwrap()]);
    let pid = prog.pid;
    tasks.0.push(pid);
    let conn = (ty != "dgram").then(|| accept_within(&old, "the client's connect"));
    let ino = sock_ino(pid, 20);
    let dir = kit.path("img");
    let o = kit.dump(pid, &dir, &[&format!("--ext-unix-sk={ino}")]);
    ok(&o);
    let _ = prog.child.wait();
    assert!(
        reap(&[pid], GONE).is_empty(),
        "the dumped client is still there"
    );
    Client {
        pid,
        ino,
        dir,
        old,
        conn,
    }
}

/// Scenarios 1 to 3: the outside peer moves to NEWPATH after the dump; the
/// restored client is told so at restore (`--ext-unix-sk=INO=NEWPATH`), or
/// by `crit edit --reconnect INO=NEWPATH` before a bare `--ext-unix-sk`.
/// Its next message arrives at NEWPATH.
fn moved_peer(ty: &str, by_edit: bool) {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let mut tasks = Tasks::default();
    let c = dump_client(&kit, &mut tasks, ty);
    // The peer moves: the old one closes, a new one at a new path.
    drop(c.conn);
    drop(c.old);
    std::fs::remove_file(kit.path("old.sock")).unwrap();
    let new_path = kit.path("new.sock");
    let new = outside(ty, &new_path);
    let consent = if by_edit {
        let o = crit(&[
            OsStr::new("edit"),
            c.dir.as_os_str(),
            OsStr::new("--reconnect"),
            OsStr::new(&format!("{}={}", c.ino, new_path.display())),
        ]);
        ok(&o);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            out.contains(&format!("{}", new_path.display())) && out.ends_with("written\n"),
            "{out}"
        );
        "--ext-unix-sk".to_string()
    } else {
        format!("--ext-unix-sk={}={}", c.ino, new_path.display())
    };
    let o = crit(&[
        OsStr::new("restore"),
        OsStr::new("-d"),
        OsStr::new("-D"),
        c.dir.as_os_str(),
        OsStr::new(&consent),
    ]);
    ok(&o);
    assert!(alive(c.pid), "restored with its pid");
    let conn = if ty == "dgram" {
        None
    } else {
        Some(accept_within(&new, "the restored client's connect"))
    };
    // The restored fd 20 is connected to the new peer (sock_diag).
    let far = conn.as_ref().unwrap_or(&new);
    let far_ino = crit::sys::sock::inode_of(far.as_raw_fd()).unwrap() as u32;
    let peer = crit::sys::sockdiag::unix_sockets()
        .unwrap()
        .get(&sock_ino(c.pid, 20))
        .and_then(|d| d.peer);
    assert_eq!(peer, Some(far_ino), "the restored client's peer");
    signal(c.pid, nix::sys::signal::Signal::SIGUSR1);
    let want = format!("{ty}-client-after-restore\n").into_bytes();
    let got = receive(far, ty, want.len());
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want),
        "what the restored client sent to the new peer"
    );
    tasks.kill();
}

#[test]
fn stream_client_follows_its_peer_to_a_new_path() {
    moved_peer("stream", false);
}

#[test]
fn seqpacket_client_follows_its_peer_to_a_new_path() {
    moved_peer("seqpacket", false);
}

#[test]
fn dgram_client_follows_its_peer_to_a_new_path() {
    moved_peer("dgram", false);
}

#[test]
fn stream_client_reconnected_by_edit() {
    moved_peer("stream", true);
}

/// Scenario 4: a server (parent: listener, accepted connection with data
/// queued) and its client (child) dumped together with no flags; `crit
/// edit --external CLIENT` gives the client an outside peer at the
/// listener's address. Restored with `--ext-unix-sk`, the client connects
/// to the restored listener by path; the server's old connection yields
/// its queue, then EOF.
#[test]
fn client_made_external_reconnects_to_the_restored_server() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let mut tasks = Tasks::default();
    let srv = kit.path("srv.sock");
    let result = kit.path("result");
    let mut prog = kit.start(
        "usk_e2e",
        &["tree", srv.to_str().unwrap(), result.to_str().unwrap()],
    );
    let w: Vec<i32> = prog.ready_numbers();
    let (server, client) = (w[0], w[1]);
    tasks.0.extend([server, client]);
    let client_ino = sock_ino(client, 20);
    let accepted_ino = sock_ino(server, 21);
    let dir = kit.path("img");
    ok(&kit.dump(server, &dir, &[]));
    let _ = prog.child.wait();
    assert!(
        reap(&[server, client], GONE).is_empty(),
        "the dumped tree is still there"
    );

    let o = crit(&[
        OsStr::new("edit"),
        dir.as_os_str(),
        OsStr::new("--external"),
        OsStr::new(&client_ino.to_string()),
    ]);
    ok(&o);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!(
            "the outside end for {client_ino}: STREAM, name {}",
            srv.display()
        )),
        "the new external entry carries the listener's address: {out}"
    );
    assert!(
        out.contains(&format!("changed unix socket {accepted_ino}")),
        "{out}"
    );

    let o = crit(&[
        OsStr::new("restore"),
        OsStr::new("-d"),
        OsStr::new("--ext-unix-sk"),
        OsStr::new("-D"),
        dir.as_os_str(),
    ]);
    ok(&o);
    assert!(alive(server) && alive(client), "restored with their pids");
    signal(client, nix::sys::signal::Signal::SIGUSR1);
    signal(server, nix::sys::signal::Signal::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let s = std::fs::read_to_string(&result).unwrap_or_default();
        if s.ends_with('\n') || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    tasks.kill();
    assert_eq!(
        answer, "old=queued-for-server eof=1 new=client-hello\n",
        "what the restored server read (old connection, then a new one)"
    );
}

/// A fresh stream socketpair: (the test's end, close-on-exec; the end to
/// hand to a child, inherited at its fd number).
fn pair() -> (OwnedFd, OwnedFd) {
    let (ours, theirs) = so::socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::empty(),
    )
    .unwrap();
    nix::fcntl::fcntl(
        &ours,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    (ours, theirs)
}

/// Starts `usk_e2e pair FD` holding one end of a pair the test made, and
/// dumps it with `--ext-unix-sk=INO`. Returns (pid, ino, images).
fn dump_pair_end(kit: &Kit, tasks: &mut Tasks) -> (i32, u32, PathBuf) {
    let (ours, theirs) = pair();
    let n = theirs.as_raw_fd().to_string();
    let mut prog = kit.start("usk_e2e", &["pair", &n]);
    drop(theirs);
    let pid = prog.pid;
    tasks.0.push(pid);
    let ino = sock_ino(pid, 20);
    let dir = kit.path("img");
    ok(&kit.dump(pid, &dir, &[&format!("--ext-unix-sk={ino}")]));
    let _ = prog.child.wait();
    assert!(
        reap(&[pid], GONE).is_empty(),
        "the dumped task is still there"
    );
    // The task is gone: the test's end sees EOF.
    assert!(receive(&ours, "stream", 1).is_empty());
    (pid, ino, dir)
}

/// Scenario 5: the task's socketpair end (other end held by the test) is
/// restored from one end of a fresh pair handed in with `--inherit-fd`;
/// messages flow both ways between the test and the restored task.
#[test]
fn socketpair_end_handed_in_with_inherit_fd() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let mut tasks = Tasks::default();
    let (pid, ino, dir) = dump_pair_end(&kit, &mut tasks);
    let (ours, theirs) = pair();
    let n = theirs.as_raw_fd();
    let handed = crit::sys::sock::inode_of(n).unwrap();
    // crit inherits `theirs` at the same fd number (not close-on-exec).
    let o = crit(&[
        "restore".to_string(),
        "-d".into(),
        "-D".into(),
        dir.display().to_string(),
        "--inherit-fd".into(),
        format!("fd[{n}]:socket:[{ino}]"),
    ]);
    drop(theirs);
    ok(&o);
    assert!(alive(pid), "restored with its pid");
    assert_eq!(
        sock_ino(pid, 20) as u64,
        handed,
        "fd 20 is the socket handed in"
    );
    signal(pid, nix::sys::signal::Signal::SIGUSR1);
    assert_eq!(receive(&ours, "stream", 9), b"from-task");
    send(&ours, b"from-test");
    assert_eq!(receive(&ours, "stream", 14), b"echo:from-test");
    tasks.kill();
    // The task is gone: EOF on the test's end.
    assert!(receive(&ours, "stream", 1).is_empty());
}

/// What a refusal must leave: the dumped tasks not running, no task of
/// ours (nothing restored, no leftovers), the images as they were.
fn nothing_changed(pids: &[i32], dir: &Path, before: &BTreeMap<String, Vec<u8>>) {
    for &p in pids {
        assert!(!Path::new(&format!("/proc/{p}")).exists(), "pid {p} runs");
    }
    assert_eq!(my_children(), Vec::<i32>::new(), "tasks left running");
    assert!(snapshot(dir) == *before, "images changed");
}

/// Scenario 6, restore without consent for an outside peer.
#[test]
fn refused_restore_without_consent() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let mut tasks = Tasks::default();
    let c = dump_client(&kit, &mut tasks, "stream");
    let before = snapshot(&c.dir);
    let o = crit(&[
        OsStr::new("restore"),
        OsStr::new("-d"),
        OsStr::new("-D"),
        c.dir.as_os_str(),
    ]);
    let e = refused(&o);
    assert!(
        e.contains(&format!(
            "{} (STREAM, peer {})",
            c.ino,
            kit.path("old.sock").display()
        )),
        "{e}"
    );
    assert!(e.contains("--ext-unix-sk"), "{e}");
    nothing_changed(&[c.pid], &c.dir, &before);
    // The peer is still there and nothing connected to it.
    assert!(!readable_now(&c.old));
}

fn readable_now(fd: &impl AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut p, PollTimeout::ZERO), Ok(1))
}

/// Scenario 6, an outside end without an address and no `--inherit-fd`.
#[test]
fn refused_outside_end_without_address() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let mut tasks = Tasks::default();
    let (pid, ino, dir) = dump_pair_end(&kit, &mut tasks);
    let before = snapshot(&dir);
    for consent in ["--ext-unix-sk".to_string(), format!("--ext-unix-sk={ino}")] {
        let o = crit(&[
            OsStr::new("restore"),
            OsStr::new("-d"),
            OsStr::new("-D"),
            dir.as_os_str(),
            OsStr::new(&consent),
        ]);
        let e = refused(&o);
        assert!(
            e.contains(&format!("unix socket {ino}"))
                && e.contains("no address")
                && e.contains(&format!("--inherit-fd fd[N]:socket:[{ino}]")),
            "{e}"
        );
        nothing_changed(&[pid], &dir, &before);
    }
}

/// Scenario 6, bad edits on the images of a server and its client: an
/// unknown inode, a socket that is not connected, a socket whose peer is
/// not external (for --reconnect), a path over 107 bytes, a path with a
/// NUL byte, an incomplete image directory.
#[test]
fn refused_bad_edits() {
    let _g = kit::restore::lock();
    let kit = Kit::new();
    let mut tasks = Tasks::default();
    let srv = kit.path("srv.sock");
    let result = kit.path("result");
    let mut prog = kit.start(
        "usk_e2e",
        &["tree", srv.to_str().unwrap(), result.to_str().unwrap()],
    );
    let w: Vec<i32> = prog.ready_numbers();
    let (server, client) = (w[0], w[1]);
    tasks.0.extend([server, client]);
    let client_ino = sock_ino(client, 20);
    let listener_ino = sock_ino(server, 20);
    let accepted_ino = sock_ino(server, 21);
    let dir = kit.path("img");
    ok(&kit.dump(server, &dir, &[]));
    let _ = prog.child.wait();
    assert!(reap(&[server, client], GONE).is_empty());
    let before = snapshot(&dir);
    let pids = [server, client];

    let edit = |args: &[&OsStr]| -> String {
        let mut a: Vec<&OsStr> = vec![OsStr::new("edit"), dir.as_os_str()];
        a.extend_from_slice(args);
        let e = refused(&crit(&a));
        nothing_changed(&pids, &dir, &before);
        e
    };

    // Unknown inode: one no socket of the images has.
    let inos = [client_ino, listener_ino, accepted_ino];
    let unknown = (1..)
        .map(|k| u32::MAX - k)
        .find(|i| !inos.contains(i))
        .unwrap();
    let e = edit(&[OsStr::new("--external"), OsStr::new(&unknown.to_string())]);
    assert!(
        e.contains(&format!(
            "--external {unknown}: no unix socket with inode {unknown}"
        )),
        "{e}"
    );
    for i in inos {
        assert!(
            e.contains(&i.to_string()),
            "lists the sockets there are: {e}"
        );
    }

    // Not connected: the listener.
    let e = edit(&[
        OsStr::new("--external"),
        OsStr::new(&listener_ino.to_string()),
    ]);
    assert!(
        e.contains(&format!("unix socket {listener_ino}")) && e.contains("is not connected"),
        "{e}"
    );

    // --reconnect on a socket whose peer is in the images: use --external.
    let arg = format!("{client_ino}=/tmp/elsewhere.sock");
    let e = edit(&[OsStr::new("--reconnect"), OsStr::new(&arg)]);
    assert!(
        e.contains(&format!("unix socket {client_ino}"))
            && e.contains(&format!("connected to {accepted_ino}"))
            && e.contains(&format!("use --external {client_ino}=PATH")),
        "{e}"
    );

    // 108 bytes are too many; 107 fit (checked with --dry-run).
    for flag in ["--external", "--reconnect"] {
        let arg = format!("{client_ino}=/{}", "a".repeat(107));
        let e = edit(&[OsStr::new(flag), OsStr::new(&arg)]);
        assert!(
            e.contains(&format!("{flag} {arg}"))
                && e.contains("PATH is 108 bytes, more than the 107"),
            "{e}"
        );
    }
    let fits = format!("{client_ino}=/{}", "a".repeat(106));
    let o = crit(&[
        OsStr::new("edit"),
        dir.as_os_str(),
        OsStr::new("--external"),
        OsStr::new(&fits),
        OsStr::new("--dry-run"),
    ]);
    ok(&o);
    nothing_changed(&pids, &dir, &before);

    // A NUL byte: the kernel's argv cannot carry one, so no crit runs at
    // all; the same argument given to crit's edit entry point is refused.
    let mut nul = format!("{client_ino}=/tmp/a").into_bytes();
    nul.extend_from_slice(b"\0b.sock");
    let spawned = kit::crit()
        .arg("edit")
        .arg(&dir)
        .arg("--external")
        .arg(OsStr::from_bytes(&nul))
        .output();
    assert_eq!(
        spawned.as_ref().map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::InvalidInput),
        "{spawned:?}"
    );
    for (r, x) in [
        (vec![OsString::from_vec(nul.clone())], vec![]),
        (vec![], vec![OsString::from_vec(nul.clone())]),
    ] {
        let e = crit::edit::run(&dir, &r, &x, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.ends_with("PATH contains a NUL byte") && e.contains(&client_ino.to_string()),
            "{e}"
        );
        nothing_changed(&pids, &dir, &before);
    }

    // An incomplete image directory (no pstree.img).
    let part = kit.path("part");
    copy_dir(&dir, &part);
    std::fs::remove_file(part.join("pstree.img")).unwrap();
    let part_before = snapshot(&part);
    let arg = client_ino.to_string();
    let e = refused(&crit(&[
        OsStr::new("edit"),
        part.as_os_str(),
        OsStr::new("--external"),
        OsStr::new(&arg),
    ]));
    assert_eq!(
        e,
        format!(
            "crit: {}: not a complete image set: missing pstree.img",
            part.display()
        )
    );
    nothing_changed(&pids, &part, &part_before);
    nothing_changed(&pids, &dir, &before);

    // The images still take a good edit: the refusals left nothing
    // half-written behind.
    ok(&crit(&[
        OsStr::new("edit"),
        dir.as_os_str(),
        OsStr::new("--external"),
        OsStr::new(&arg),
        OsStr::new("--dry-run"),
    ]));
    tasks.kill();
}

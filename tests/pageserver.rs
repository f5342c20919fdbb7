//! Dumps that send their pages to a page server (issue 19): `crit
//! page-server` takes them over TCP and writes pagemap and pages images
//! as the dump would have, CRIU's protocol. A dump and a pre-dump chain
//! through servers restore every page (tests/programs/gens.c checks its
//! memory itself), shared memory goes there too, and a session cut
//! short, a hole the server's parent images lack, or a server that is
//! not there fail with one line and leave nothing behind.

mod kit;

use kit::gens::{ask, crit, ok, restore_and_ask, start, stats};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Stdio};

/// A `crit page-server` that listens (it said so on --status-fd).
struct Server {
    child: Child,
    port: u16,
}

/// Starts `crit page-server -D DIR --port P extra...` and waits until it
/// listens.
fn serve(dir: &Path, extra: &[&str]) -> Server {
    let port = kit::dump::free_ports(1);
    let mut cmd = kit::crit();
    cmd.args(["page-server", "-D", dir.to_str().unwrap(), "--port"])
        .arg(port.to_string())
        .args(extra)
        .stderr(Stdio::piped());
    Server {
        child: kit::proc::spawn_listening(cmd),
        port,
    }
}

impl Server {
    fn args(&self) -> Vec<String> {
        ["--page-server", "--address", "127.0.0.1", "--port"]
            .iter()
            .map(|s| s.to_string())
            .chain([self.port.to_string()])
            .collect()
    }

    /// Waits for the server; returns whether it succeeded and its stderr.
    fn end(self) -> (bool, String) {
        let o = self.child.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Copies the server's images into the dump's directory (what one does
/// after a migration: both halves in one place).
fn merge(from: &Path, to: &Path) {
    for n in names(from).iter().filter(|n| n.ends_with(".img")) {
        std::fs::copy(from.join(n), to.join(n)).unwrap();
    }
}

fn dump_args<'a>(pid: &'a str, dir: &'a Path, s: &'a [String]) -> Vec<&'a str> {
    let mut a = vec!["-t", pid, "-D", dir.to_str().unwrap()];
    a.extend(s.iter().map(String::as_str));
    a
}

#[test]
fn a_pre_dump_and_a_dump_through_page_servers_restore_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 64, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let (s1, s2) = (tmp.path().join("s1"), tmp.path().join("s2"));

    let srv = serve(&s1, &[]);
    let mut a = vec!["pre-dump"];
    let sa = srv.args();
    a.extend(dump_args(&pid, &d1, &sa));
    ok(&crit(&a));
    let (good, err) = srv.end();
    assert!(good, "{err}");
    // The pages are on the server's side only, with the server's ids.
    let pagemap = format!("pagemap-{pid}.img");
    assert!(!names(&d1).contains(&pagemap), "{:?}", names(&d1));
    assert_eq!(names(&s1), vec![pagemap.clone(), "pages-65537.img".into()]);
    for n in names(&s1) {
        let mode = std::fs::metadata(s1.join(&n)).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
    }
    assert!(ask(g.pid, &g.result).starts_with("OK"));

    let srv = serve(&s2, &["--prev-images-dir", "../s1"]);
    let mut a = vec!["dump", "--prev-images-dir", "../d1"];
    let sa = srv.args();
    a.extend(dump_args(&pid, &d2, &sa));
    let e = ok(&crit(&a));
    assert!(e.contains("sent to the page server"), "{e}");
    let (good, err) = srv.end();
    assert!(good, "{err}");
    // Only what was written since went over; the rest is left to s1.
    let st = stats(&d2);
    assert!(st.pages_skipped_parent > 8 * 1024, "{st:?}");
    assert_eq!(
        std::fs::read_link(s2.join("parent")).unwrap(),
        Path::new("../s1")
    );
    merge(&s1, &d1);
    merge(&s2, &d2);
    let a = restore_and_ask(&mut g, &d2);
    assert!(a.starts_with("OK 16384 "), "{a}");
}

/// The dump fails after it has scanned what the task wrote since the
/// pre-dump: the pre-dump's tracking goes back to its keeper, and the
/// dump run again (to a server that has the parent images) copies the
/// task whole, since that scan is lost with the failed images.
#[test]
fn a_server_without_the_parent_images_fails_the_dump_cleanly() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    // Few writes, spread wide: most pages written before the failed
    // dump's scan are not written again before the retry.
    let mut g = start(tmp.path(), 16, 16, 200, false, false);
    let pid = g.pid.to_string();
    let (d1, dx) = (tmp.path().join("d1"), tmp.path().join("dx"));
    let s1 = tmp.path().join("s1");
    let srv = serve(&s1, &[]);
    let mut a = vec!["pre-dump"];
    let sa = srv.args();
    a.extend(dump_args(&pid, &d1, &sa));
    ok(&crit(&a));
    assert!(srv.end().0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A server without the parent images cannot take the holes: the dump
    // fails with one line, and the task runs on.
    let orphan = tmp.path().join("orphan");
    let srv = serve(&orphan, &[]);
    let mut a = vec!["dump", "--prev-images-dir", "../d1", "-R"];
    let sa = srv.args();
    a.extend(dump_args(&pid, &dx, &sa));
    let o = crit(&a);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("no parent images of pagemap-"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let (good, _) = srv.end();
    assert!(!good);
    assert!(names(&orphan).is_empty(), "{:?}", names(&orphan));
    assert!(!dx.exists());
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let s2 = tmp.path().join("s2");
    let srv = serve(&s2, &["--prev-images-dir", "../s1"]);
    let sa = srv.args();
    let mut a = vec!["dump", "--prev-images-dir", "../d1", "-R"];
    a.extend(dump_args(&pid, &dx, &sa));
    ok(&crit(&a));
    let (good, err) = srv.end();
    assert!(good, "{err}");
    assert_eq!(stats(&dx).pages_skipped_parent, 0, "{:?}", stats(&dx));
    merge(&s1, &d1);
    merge(&s2, &dx);
    let a = restore_and_ask(&mut g, &dx);
    assert!(a.starts_with("OK 4096 "), "{a}");
}

/// A pre-dump or dump on top of a pre-dump that cannot reach its page
/// server (a wrong port) fails before it takes the pre-dump's memory
/// tracking: the dump run again with the right port still leaves to the
/// pre-dump what was not written since, and the task comes back whole.
#[test]
fn a_dump_that_missed_its_server_can_be_run_again() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 64, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let (d1, d2) = (tmp.path().join("d1"), tmp.path().join("d2"));
    let (s1, s2) = (tmp.path().join("s1"), tmp.path().join("s2"));
    let srv = serve(&s1, &[]);
    let mut a = vec!["pre-dump"];
    let sa = srv.args();
    a.extend(dump_args(&pid, &d1, &sa));
    ok(&crit(&a));
    assert!(srv.end().0);
    let dump = ["dump", "--prev-images-dir", "../d1", "--track-mem"];
    // Nothing listens on this port.
    let port = kit::dump::free_ports(1).to_string();
    let wrong: Vec<String> = ["--page-server", "--address", "127.0.0.1", "--port", &port]
        .map(String::from)
        .to_vec();
    let pre_dump = ["pre-dump", "--prev-images-dir", "../d1"];
    for first in [&pre_dump[..], &dump[..]] {
        let mut a = first.to_vec();
        a.extend(dump_args(&pid, &d2, &wrong));
        let o = crit(&a);
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(
            e.contains("cannot connect") && e.trim().lines().count() == 1,
            "{e}"
        );
        assert!(!d2.exists());
        assert!(ask(g.pid, &g.result).starts_with("OK"));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let srv = serve(&s2, &["--prev-images-dir", "../s1"]);
    let sa = srv.args();
    let mut a = dump.to_vec();
    a.extend(dump_args(&pid, &d2, &sa));
    ok(&crit(&a));
    let (good, err) = srv.end();
    assert!(good, "{err}");
    let st = stats(&d2);
    assert!(st.pages_skipped_parent > 8 * 1024, "{st:?}");
    merge(&s1, &d1);
    merge(&s2, &d2);
    let a = restore_and_ask(&mut g, &d2);
    assert!(a.starts_with("OK 16384 "), "{a}");
}

#[test]
fn a_server_in_the_dumps_own_directory_completes_the_set() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = start(tmp.path(), 32, 4, 20000, false, false);
    let pid = g.pid.to_string();
    let d = tmp.path().join("d");
    let srv = serve(&d, &[]);
    let mut a = vec!["dump"];
    let sa = srv.args();
    a.extend(dump_args(&pid, &d, &sa));
    ok(&crit(&a));
    let (good, err) = srv.end();
    assert!(good, "{err}");
    let a = restore_and_ask(&mut g, &d);
    assert!(a.starts_with("OK 8192 "), "{a}");
}

/// (entries, pages bytes) of every shared memory pagemap in `dir`, by name.
fn shmem(dir: &Path) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    for n in names(dir)
        .into_iter()
        .filter(|n| n.starts_with("pagemap-shmem-"))
    {
        let (id, entries) = crit::restore::plan::read_pagemap(&dir.join(&n), Vec::new()).unwrap();
        let listed: Vec<u8> = entries
            .iter()
            .flat_map(|e| {
                let mut v = e.vaddr.to_le_bytes().to_vec();
                v.extend(e.nr_pages.unwrap_or(0).to_le_bytes());
                v.extend(e.flags.unwrap_or(0).to_le_bytes());
                v
            })
            .collect();
        let pages = std::fs::read(dir.join(format!("pages-{id}.img"))).unwrap();
        out.push((n, listed, pages));
    }
    out
}

#[test]
fn shared_memory_goes_to_the_page_server_too() {
    let kit = kit::dump::Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let port = kit::dump::free_ports(3);
    let prog = kit.start("files", &[sdir.to_str().unwrap(), &port.to_string()]);
    let local = kit.path("local");
    kit::dump::ok(&kit.dump(prog.pid, &local, &["-R"]));
    let (d, s) = (kit.path("d"), kit.path("s2"));
    let srv = serve(&s, &[]);
    let sa = srv.args();
    let mut extra = vec!["-R"];
    extra.extend(sa.iter().map(String::as_str));
    kit::dump::ok(&kit.dump(prog.pid, &d, &extra));
    let (good, err) = srv.end();
    assert!(good, "{err}");
    kit::dump::kill_tree(prog.pid);
    // The memfd and the shared anonymous mapping, as a local dump has them.
    let (here, there) = (shmem(&local), shmem(&s));
    assert_eq!(here.len(), 2, "{:?}", names(&local));
    assert_eq!(here, there);
    assert!(shmem(&d).is_empty());
}

/// Sends `stream` to a fresh server as a dump would, then hangs up;
/// returns whether the server succeeded, its stderr and what it left.
fn serve_raw(stream: &[u8], extra: &[&str]) -> (bool, String, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let srv = serve(&dir, extra);
    let mut c = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
    c.write_all(stream).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    let (good, err) = srv.end();
    (good, err, names(&dir))
}

/// A command header as CRIU lays it out.
fn header(cmd: u32, nr_pages: u64, vaddr: u64, dst: u64) -> Vec<u8> {
    let mut b = cmd.to_le_bytes().to_vec();
    b.extend([0; 4]);
    b.extend(nr_pages.to_le_bytes());
    b.extend(vaddr.to_le_bytes());
    b.extend(dst.to_le_bytes());
    b
}

#[test]
fn a_session_cut_short_or_wrong_leaves_nothing_on_the_server() {
    let _g = kit::restore::lock();
    let task7 = 7 << 8 | 1;
    let open = header(4, 0, 0, task7);
    // Two pages announced, one sent, then the dump is gone.
    let mut s = open.clone();
    s.extend(header(6 | 4 << 16, 2, 0x10000, task7));
    s.extend([0x55u8; 4096]);
    let (good, err, left) = serve_raw(&s, &[]);
    assert!(!good && left.is_empty(), "{err} {left:?}");
    assert!(err.contains("4096 bytes into pages"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Pages and no CLOSE: not flushed, nothing kept.
    let mut s = open.clone();
    s.extend(header(6 | 4 << 16, 1, 0x10000, task7));
    s.extend([0x55u8; 4096]);
    let (good, err, left) = serve_raw(&s, &[]);
    assert!(!good && left.is_empty(), "{err} {left:?}");
    assert!(err.contains("before it closed the session"), "{err}");
    // A hole with no parent images to hold it.
    let mut s = open.clone();
    s.extend(header(6 | 1 << 16, 1, 0x10000, task7));
    let (good, err, left) = serve_raw(&s, &[]);
    assert!(!good && left.is_empty(), "{err} {left:?}");
    assert!(err.contains("do not hold them"), "{err}");
    // A command no CRIU sends, named with its place in the stream.
    let mut s = open.clone();
    s.extend(header(0x99, 0, 0, task7));
    let (good, err, left) = serve_raw(&s, &[]);
    assert!(!good && left.is_empty(), "{err} {left:?}");
    assert!(err.contains("at byte 64") && err.contains("0x99"), "{err}");
    // A lazy server without images to serve fails before it listens.
    let empty = tempfile::tempdir().unwrap();
    let d = empty.path().to_str().unwrap();
    let o = kit::crit_out(&["page-server", "-D", d, "--port", "1", "--lazy-pages"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("pstree.img") && err.lines().count() == 1,
        "{err}"
    );
    // A whole session of one present page is kept, answered and closed.
    let mut s = open;
    s.extend(header(6 | 4 << 16, 1, 0x10000, task7));
    s.extend([0x55u8; 4096]);
    s.extend(header(0x1023, 0, 0, 0));
    let (good, err, left) = serve_raw(&s, &[]);
    assert!(good, "{err}");
    assert_eq!(left, vec!["pagemap-7.img", "pages-65537.img"]);
}

#[test]
fn a_dump_with_no_server_fails_before_freezing() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let g = start(tmp.path(), 8, 1, 1000, false, false);
    let pid = g.pid.to_string();
    let port = kit::dump::free_ports(1).to_string();
    let d = tmp.path().join("d");
    let o = crit(&[
        "dump",
        "-t",
        &pid,
        "-D",
        d.to_str().unwrap(),
        "--page-server",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
    ]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains(&format!("127.0.0.1:{port}: cannot connect")),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!d.exists());
    assert!(ask(g.pid, &g.result).starts_with("OK"));
    kit::proc::kill_tree(g.pid);
    kit::proc::reap(&[g.pid], std::time::Duration::from_secs(5));
}

/// Whether `pid` is stopped by its tracer (the dump's freeze).
fn frozen(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| s.contains("State:\tt"))
}

/// Polls `f` every 20 ms for up to 10 s; whether it came true.
fn within_10s(f: impl Fn() -> bool) -> bool {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}

/// A server that stalls (here: stopped) must not keep the tree frozen
/// once `crit dump` is killed: the dump's waits on the server end every
/// half second to look whether it should stop, and it lets the tree go
/// (docs/dump.md, "Safety").
#[test]
fn a_stalled_server_does_not_keep_a_killed_dumps_tree_frozen() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let g = start(tmp.path(), 16, 2, 20000, false, false);
    let srv = serve(&tmp.path().join("s"), &[]);
    let server = Pid::from_raw(srv.child.id() as i32);
    kill(server, Signal::SIGSTOP).unwrap();
    let pid = g.pid.to_string();
    let sa = srv.args();
    let d = tmp.path().join("d");
    let mut a = vec!["dump", "-R"];
    a.extend(dump_args(&pid, &d, &sa));
    let mut dump = kit::crit().args(&a).stderr(Stdio::piped()).spawn().unwrap();
    let was_frozen = within_10s(|| frozen(g.pid));
    dump.kill().unwrap();
    let _ = dump.wait();
    let let_go = within_10s(|| !frozen(g.pid));
    kill(server, Signal::SIGCONT).unwrap();
    let _ = kill(server, Signal::SIGKILL);
    let _ = srv.end();
    let answer = ask(g.pid, &g.result);
    kit::proc::kill_tree(g.pid);
    kit::proc::reap(&[g.pid], std::time::Duration::from_secs(5));
    assert!(was_frozen, "the dump never froze the tree");
    assert!(let_go, "the tree stayed frozen with the server stalled");
    assert!(answer.starts_with("OK"), "{answer}");
}

/// `page-server -d --pidfile F`: once the command returns, F names the
/// daemon, which listens; a server that cannot start (its port taken,
/// its pidfile unwritable) says why in one line with exit status 1, and
/// leaves no daemon behind.
#[test]
fn a_daemon_server_is_ready_when_the_command_returns_or_says_why_not() {
    let kit = kit::dump::Kit::new();
    let port = kit::dump::free_ports(1);
    let ps = |dir: &str| {
        let mut c = kit::crit();
        c.args(["page-server", "-D"])
            .arg(kit.path(dir))
            .args(["--port", &port.to_string()]);
        c
    };
    let pid = kit::proc::daemon_started(ps("a"), &kit.path("a.pid"));
    // The port is taken (by the daemon): the next server fails to listen.
    let e = kit::proc::daemon_refused(ps("b"), &kit.path("b.pid"));
    assert!(e.contains(&format!("port {port}")), "{e}");
    assert!(!kit.path("b.pid").exists());
    assert!(
        !kit.path("b").exists(),
        "a server that never listened made its -D"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    kit::proc::kill_and_reap(&[pid]);
    // Setup passes, but the daemon cannot write its pidfile.
    let e = kit::proc::daemon_refused(ps("c"), &kit.path("none/c.pid"));
    assert!(e.contains("none/c.pid: writing the pidfile"), "{e}");
    assert!(
        !kit.path("c").exists(),
        "a server that never served left its -D"
    );
    assert!(
        within_10s(|| std::net::TcpListener::bind(("0.0.0.0", port)).is_ok()),
        "a daemon still listens"
    );
}

/// `page-server -d -o LOG`: what the daemon says once it listens goes to
/// LOG (private, appended to): the summary of a session it kept, and
/// the one-line error of a session that ended badly, which a daemon
/// without -o can only send to /dev/null.
#[test]
fn a_daemon_server_says_how_its_session_ended_in_its_log_file() {
    let kit = kit::dump::Kit::new();
    let log = kit.path("server.log");
    let task7 = 7 << 8 | 1;
    let mut one_page = header(4, 0, 0, task7);
    one_page.extend(header(6 | 4 << 16, 1, 0x10000, task7));
    one_page.extend([0x55u8; 4096]);
    let mut whole = one_page.clone();
    whole.extend(header(0x1023, 0, 0, 0));
    for (n, stream) in [whole, one_page].iter().enumerate() {
        let port = kit::dump::free_ports(1);
        let mut c = kit::crit();
        c.args(["page-server", "-D"])
            .arg(kit.path(&format!("d{n}")))
            .args(["--port", &port.to_string(), "-o"])
            .arg(&log);
        let pid = kit::proc::daemon_started(c, &kit.path(&format!("{n}.pid")));
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.write_all(stream).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = c.read_to_end(&mut Vec::new());
        assert!(
            within_10s(|| !kit::proc::alive(pid)),
            "the daemon did not end"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("kept 1 pagemap(s)") && lines[0].contains("127.0.0.1"),
        "{text}"
    );
    assert!(lines[1].contains("before it closed the session"), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    assert_eq!(names(&kit.path("d1")), Vec::<String>::new());
}

/// `-o` that cannot take the server's messages: a path in a directory
/// that does not exist, or a FIFO nobody reads, is the command's own
/// error (exit 1, one line) and leaves no -D (it used to be left; the
/// FIFO hung the command in open); a log file that cannot be written
/// (/dev/full) costs the server nothing: 0 for a session it kept, 1 for
/// one cut short (both were 101, eprintln!'s panic). Found by a hostile
/// probe.
#[test]
fn a_log_file_that_fails_leaves_no_directory_and_the_exit_status_alone() {
    let kit = kit::dump::Kit::new();
    let fifo = kit.path("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let dir = kit.path("d");
    for log in [kit.path("none/log"), fifo] {
        let port = kit::dump::free_ports(1).to_string();
        let o = kit::crit()
            .args(["page-server", "-D"])
            .arg(&dir)
            .args(["--port", &port, "-o"])
            .arg(&log)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(e.contains("opening the log file"), "{e}");
        assert!(!dir.exists(), "{} is left: {e}", dir.display());
    }
    let task7 = 7 << 8 | 1;
    let mut s = header(4, 0, 0, task7);
    s.extend(header(6 | 4 << 16, 1, 0x10000, task7));
    s.extend([0x55u8; 4096]);
    let cut = s.clone();
    s.extend(header(0x1023, 0, 0, 0));
    for (stream, code) in [(s, 0), (cut, 1)] {
        let tmp = tempfile::tempdir().unwrap();
        let srv = serve(&tmp.path().join("s"), &["-o", "/dev/full"]);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        c.write_all(&stream).unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let _ = c.read_to_end(&mut Vec::new());
        let o = srv.child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{o:?}");
    }
}

/// A lazy page server (`page-server --lazy-pages` on a dump's images)
/// refuses a GET that names no page in one line saying what was wrong
/// with it: 0 pages, or an address that is not a page's start.
#[test]
fn a_lazy_server_names_a_get_of_no_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let g = start(tmp.path(), 4, 4, 10, false, false);
    let img = tmp.path().join("img");
    ok(&crit(&[
        "dump",
        "-R",
        "-t",
        &g.pid.to_string(),
        "-D",
        img.to_str().unwrap(),
    ]));
    kit::dump::kill_tree(g.pid);
    for (nr, vaddr, says) in [
        (0u64, 0x10000u64, "a GET of 0 pages at 0x10000"),
        (1, 0x10010, "a GET at 0x10010, not a page's start"),
    ] {
        let srv = serve(&img, &["--lazy-pages"]);
        let mut c = std::net::TcpStream::connect(("127.0.0.1", srv.port)).unwrap();
        c.write_all(&header(7, nr, vaddr, g.pid as u64)).unwrap();
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
        let (good, err) = srv.end();
        assert!(!good && sink.is_empty(), "{err}");
        assert!(err.contains(says), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

//! Post-copy restore (issue 19): `crit restore --lazy-pages` with `crit
//! lazy-pages` serving the images. The task (tests/programs/lazymix.c)
//! moves, drops and unmaps parts of its memory and forks, all while its
//! pages still arrive, then checks every page; gens.c keeps writing and
//! forking meanwhile. Once done the daemon exits and leaves no
//! registration behind; without a daemon the restore fails before
//! anything runs. `dump --lazy-pages` serves the pages from the frozen
//! source itself.

mod kit;

use kit::dump::{ok, Kit};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `crit lazy-pages -D DIR`, listening.
fn daemon(dir: &Path) -> Child {
    let mut cmd = kit::crit();
    cmd.args(["lazy-pages", "-D", dir.to_str().unwrap()])
        .stderr(Stdio::piped());
    kit::proc::spawn_listening(cmd)
}

/// Waits for the daemon; its stderr, which must say it succeeded.
fn finished(d: Child) -> String {
    let o = d.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{e}");
    e
}

fn restore_lazily(dir: &Path) -> std::process::Output {
    kit::crit_out(&[
        "restore",
        "-d",
        "--shell-job",
        "--lazy-pages",
        "-D",
        dir.to_str().unwrap(),
    ])
}

#[test]
fn a_task_moves_drops_unmaps_and_forks_while_its_pages_arrive() {
    let kit = Kit::new();
    let result = kit.path("result");
    let trigger = kit.path("go");
    let args = ["1024", result.to_str().unwrap(), trigger.to_str().unwrap()];
    let prog = kit.start("lazymix", &args);
    let pid = prog.pid;
    let d = kit.path("d");
    ok(&kit.dump(pid, &d, &[]));
    kit::dump::reap(&[pid], Duration::from_secs(5));
    // The restored task starts its work the moment it runs, while most
    // of its 1 GiB is still to come.
    std::fs::write(&trigger, b"").unwrap();
    let lp = daemon(&d);
    ok(&restore_lazily(&d));
    let a = kit::proc::line(&result, 0);
    assert_eq!(a, "OK 229376");
    let said = finished(lp);
    // Each kind of event reached the daemon, the mremap with pages of
    // the moved range still to come.
    for e in [
        "1 fork(s)",
        "1 madvise(s)",
        "munmap(s)",
        "still to come moved",
    ] {
        assert!(said.contains(e), "{e}: {said}");
    }
    assert!(!said.contains("(0.0 MiB still to come moved)"), "{said}");
    assert!(!kit::proc::uffd_registered(pid), "a registration is left");
    kit::dump::kill_tree(pid);
}

/// Pieces of a mapping moved one after another while the pages arrive
/// in the background: a copy that found its range's mapping gone (moved,
/// the event not yet read) dropped the range, and the task read zeros
/// where its pages should have come.
#[test]
fn pieces_moved_while_pages_arrive_in_the_background_keep_their_pages() {
    let kit = Kit::new();
    let result = kit.path("result");
    let args = ["256", result.to_str().unwrap(), "-", "2048"];
    let prog = kit.start("lazymix", &args);
    let pid = prog.pid;
    let d = kit.path("d");
    ok(&kit.dump(pid, &d, &[]));
    kit::dump::reap(&[pid], Duration::from_secs(5));
    let lp = daemon(&d);
    ok(&restore_lazily(&d));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    assert_eq!(kit::proc::line(&result, 0), "OK 65536");
    let said = finished(lp);
    // The moves reached the daemon with pages of theirs still to come.
    assert!(!said.contains(" 0 mremap(s)"), "{said}");
    assert!(!said.contains("(0.0 MiB still to come moved)"), "{said}");
    kit::dump::kill_tree(pid);
}

#[test]
fn a_task_that_writes_and_forks_finds_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let mut g = kit::gens::start(tmp.path(), 128, 16, 20000, true, false);
    let d = tmp.path().join("d");
    let pid = g.pid.to_string();
    kit::gens::ok(&kit::gens::crit(&[
        "dump",
        "-t",
        &pid,
        "-D",
        d.to_str().unwrap(),
    ]));
    let _ = g.child.wait();
    let lp = daemon(&d);
    let t = Instant::now();
    let r = loop {
        let r = restore_lazily(&d);
        if r.status.success() || t.elapsed() > Duration::from_secs(5) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    kit::gens::ok(&r);
    let a = kit::gens::ask(g.pid, &g.result);
    assert!(a.starts_with("OK 32768 "), "{a}");
    finished(lp);
    assert!(!kit::proc::uffd_registered(g.pid));
    let a = kit::gens::ask(g.pid, &g.result);
    assert!(a.starts_with("OK 32768 "), "{a}");
    kit::proc::kill_tree(g.pid);
    kit::proc::reap(&[g.pid], Duration::from_secs(5));
}

#[test]
fn without_a_daemon_nothing_is_restored() {
    let kit = Kit::new();
    let result = kit.path("result");
    let prog = kit.start("lazymix", &["8", result.to_str().unwrap()]);
    let d = kit.path("d");
    ok(&kit.dump(prog.pid, &d, &[]));
    kit::dump::reap(&[prog.pid], Duration::from_secs(5));
    let o = restore_lazily(&d);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("lazy-pages.socket"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(!kit::proc::exists(prog.pid));
}

#[test]
fn a_lazy_restore_takes_its_pages_from_a_remote_page_server() {
    let kit = Kit::new();
    let result = kit.path("result");
    let trigger = kit.path("go");
    let args = ["256", result.to_str().unwrap(), trigger.to_str().unwrap()];
    let prog = kit.start("lazymix", &args);
    let pid = prog.pid;
    let (src, dst) = (kit.path("src"), kit.path("dst"));
    ok(&kit.dump(pid, &src, &[]));
    kit::dump::reap(&[pid], Duration::from_secs(5));
    // The destination's copy of the images has zeros where the lazy
    // pages were: they can only come from the source's page server.
    std::fs::create_dir(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let zeroed = kit::restore::zero_lazy_pages(&dst, pid);
    assert!(zeroed > 200 << 20, "{zeroed}");
    std::fs::write(&trigger, b"").unwrap();

    let port = kit::dump::free_ports(1).to_string();
    let mut cmd = kit::crit();
    cmd.args([
        "page-server",
        "--lazy-pages",
        "-D",
        src.to_str().unwrap(),
        "--port",
        &port,
    ]);
    let server = kit::proc::spawn_listening(cmd);
    let mut cmd = kit::crit();
    cmd.args(["lazy-pages", "-D", dst.to_str().unwrap(), "--page-server"])
        .args(["--address", "127.0.0.1", "--port", &port])
        .stderr(Stdio::piped());
    let lp = kit::proc::spawn_listening(cmd);
    ok(&restore_lazily(&dst));
    assert_eq!(kit::proc::line(&result, 0), "OK 57344");
    let said = finished(lp);
    assert!(said.contains("still to come moved"), "{said}");
    assert!(server.wait_with_output().unwrap().status.success());
    assert!(!kit::proc::uffd_registered(pid));
    kit::dump::kill_tree(pid);
}

/// `lazy-pages -d --pidfile F`: once the command returns, F names the
/// daemon and its socket is there; a daemon that cannot start (no page
/// server at --page-server, a pidfile it cannot write) says why in one
/// line with exit status 1 and leaves no socket behind.
#[test]
fn a_daemon_is_ready_when_the_command_returns_or_says_why_not() {
    let kit = Kit::new();
    let imgs = kit::copy_fixture("counter");
    let socket = imgs.path().join("lazy-pages.socket");
    let lp = || {
        let mut c = kit::crit();
        c.args(["lazy-pages", "-D"]).arg(imgs.path());
        c
    };
    let pid = kit::proc::daemon_started(lp(), &kit.path("a.pid"));
    assert!(socket.exists());
    kit::proc::kill_and_reap(&[pid]);
    let _ = std::fs::remove_file(&socket);

    let port = kit::dump::free_ports(1).to_string();
    let mut c = lp();
    c.args(["--page-server", "--address", "127.0.0.1", "--port", &port]);
    let e = kit::proc::daemon_refused(c, &kit.path("b.pid"));
    assert!(e.contains("cannot connect"), "{e}");
    assert!(!kit.path("b.pid").exists());
    assert!(!socket.exists(), "the socket is left");

    let e = kit::proc::daemon_refused(lp(), &kit.path("none/c.pid"));
    assert!(e.contains("none/c.pid: writing the pidfile"), "{e}");
    assert!(!socket.exists(), "the socket is left");
}

/// A page server that goes away while a lazy-pages daemon takes pages
/// from it: the daemon says so in one line, naming it, and exits 1.
#[test]
fn a_page_server_that_goes_away_is_named() {
    use std::io::Read;
    let kit = Kit::new();
    let result = kit.path("result");
    let trigger = kit.path("go");
    let args = ["16", result.to_str().unwrap(), trigger.to_str().unwrap()];
    let prog = kit.start("lazymix", &args);
    let pid = prog.pid;
    let d = kit.path("d");
    ok(&kit.dump(pid, &d, &[]));
    kit::dump::reap(&[pid], Duration::from_secs(5));
    std::fs::write(&trigger, b"").unwrap();
    // A "page server" that hangs up at the first question.
    let server = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = server.local_addr().unwrap().port().to_string();
    let hang_up = std::thread::spawn(move || {
        let (mut c, _) = server.accept().unwrap();
        let _ = c.read(&mut [0u8; 64]);
    });
    let mut cmd = kit::crit();
    cmd.args(["lazy-pages", "-D", d.to_str().unwrap(), "--page-server"])
        .args(["--address", "127.0.0.1", "--port", &port])
        .stderr(Stdio::piped());
    let lp = kit::proc::spawn_listening(cmd);
    // The restore may end first, or hear that the daemon went away.
    let _ = restore_lazily(&d);
    let o = lp.wait_with_output().unwrap();
    hang_up.join().unwrap();
    kit::dump::kill_tree(pid);
    kit::dump::reap(&[pid], Duration::from_secs(5));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    let said = format!("page server at 127.0.0.1:{port} closed the connection");
    assert!(e.contains(&said), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
}

/// A second `lazy-pages` of a directory whose daemon still waits for its
/// restore is refused in one line and leaves the first one's socket, and
/// the restore is served by the first; once that restore came, a daemon
/// of the same directory may start again.
#[test]
fn a_second_daemon_of_a_directory_is_refused_while_the_first_waits() {
    let kit = Kit::new();
    let result = kit.path("result");
    let prog = kit.start("lazymix", &["8", result.to_str().unwrap()]);
    let pid = prog.pid;
    let d = kit.path("d");
    ok(&kit.dump(pid, &d, &[]));
    kit::dump::reap(&[pid], Duration::from_secs(5));
    let first = daemon(&d);
    let socket = d.join("lazy-pages.socket");
    let ino = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = ino(&socket);
    let mut second = kit::crit();
    second.args(["lazy-pages", "-D"]).arg(&d);
    let e = kit::proc::daemon_refused(second, &kit.path("second.pid"));
    assert!(e.contains("another crit lazy-pages serves it"), "{e}");
    assert!(!kit.path("second.pid").exists());
    assert_eq!(
        ino(&socket),
        before,
        "the first daemon's socket was replaced"
    );
    ok(&restore_lazily(&d));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    assert_eq!(kit::proc::line(&result, 0), "OK 1792");
    let said = finished(first);
    assert!(said.contains("lazy pages of 1 task(s) in"), "{said}");
    kit::proc::kill_tree(pid);
    let mut again = kit::crit();
    again.args(["lazy-pages", "-D"]).arg(&d);
    let p = kit::proc::daemon_started(again, &kit.path("again.pid"));
    kit::proc::kill_and_reap(&[p]);
}

/// Without `-d`, `-o FILE` has the server's stderr by the time it says
/// it is ready: a caller that heard the status byte may close the pipe
/// the command started with.
#[test]
fn a_server_s_output_is_in_its_log_file_once_it_says_it_is_ready() {
    let kit = Kit::new();
    let imgs = kit::copy_fixture("counter");
    let log = kit.path("lazy.log");
    let mut c = kit::crit();
    c.args(["lazy-pages", "-D"])
        .arg(imgs.path())
        .arg("-o")
        .arg(&log);
    let mut d = kit::proc::spawn_listening(c);
    let fd2 = std::fs::read_link(format!("/proc/{}/fd/2", d.id())).unwrap();
    assert_eq!(fd2, log);
    let _ = d.kill();
    let _ = d.wait();
}

/// A pidfile that is a FIFO nobody reads fails the server in one line
/// (it used to hold the command forever), and leaves no socket.
#[test]
fn a_fifo_without_reader_as_pidfile_fails_the_server() {
    let kit = Kit::new();
    let imgs = kit::copy_fixture("counter");
    let fifo = kit.path("pid.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut c = kit::crit();
    c.args(["lazy-pages", "-D"]).arg(imgs.path());
    let e = kit::proc::daemon_refused(c, &fifo);
    assert!(e.contains("writing the pidfile"), "{e}");
    assert!(!imgs.path().join("lazy-pages.socket").exists());
}

/// `crit dump --lazy-pages ... -D DIR` serving on `port`, started and
/// told (by its status byte) that the images are written.
fn dump_lazily(pid: i32, dir: &Path, port: &str) -> Child {
    let mut cmd = kit::crit();
    cmd.args(["dump", "-t", &pid.to_string(), "-D", dir.to_str().unwrap()])
        .args(["--lazy-pages", "--address", "127.0.0.1", "--port", port])
        .stderr(Stdio::piped());
    kit::proc::spawn_listening(cmd)
}

/// A lazymix of MIB MiB in a pid namespace of its own, being dumped
/// with `--lazy-pages` (images written, the dump waiting for a daemon).
struct Serving {
    unshare: Child,
    pid: i32,
    result: std::path::PathBuf,
    src: std::path::PathBuf,
    port: String,
}

impl Serving {
    fn start(kit: &Kit, mib: &str) -> (Serving, Child) {
        let result = kit.path("result");
        let (unshare, pid) =
            kit::proc::start_in_pid_ns(kit, "lazymix", &[mib, result.to_str().unwrap()]);
        let src = kit.path("src");
        let port = kit::dump::free_ports(1).to_string();
        let dump = dump_lazily(pid, &src, &port);
        let s = Serving {
            unshare,
            pid,
            result,
            src,
            port,
        };
        (s, dump)
    }

    /// The task, resumed, finds its memory intact; then it goes.
    fn runs_intact(self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGUSR1,
        )
        .unwrap();
        let l = kit::proc::line(&self.result, 0);
        assert!(l.starts_with("OK"), "{l}");
        kit::dump::kill_tree(self.pid);
        let _ = self.unshare.wait_with_output();
    }
}

/// Post-copy from the source: `dump --lazy-pages` writes the images
/// without the task's private memory and serves it from the frozen task
/// to the destination's daemon, which feeds the restored task while it
/// already moves, drops, unmaps and forks; the dump lets the source go
/// once the daemon has every page.
#[test]
fn a_dump_serves_the_pages_it_leaves_in_the_frozen_task() {
    let kit = Kit::new();
    let result = kit.path("result");
    let trigger = kit.path("go");
    let args = ["256", result.to_str().unwrap(), trigger.to_str().unwrap()];
    let (unshare, pid) = kit::proc::start_in_pid_ns(&kit, "lazymix", &args);
    let (src, dst) = (kit.path("src"), kit.path("dst"));
    let port = kit::dump::free_ports(1).to_string();
    let dump = dump_lazily(pid, &src, &port);
    // The images hold none of the 256 MiB: copy them over.
    std::fs::create_dir(&dst).unwrap();
    let mut bytes = 0;
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        bytes += std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    assert!(bytes < 1 << 20, "{bytes} bytes of images");
    std::fs::write(&trigger, b"").unwrap();
    let mut cmd = kit::crit();
    cmd.args(["lazy-pages", "-D", dst.to_str().unwrap(), "--page-server"])
        .args(["--address", "127.0.0.1", "--port", &port])
        .stderr(Stdio::piped());
    let lp = kit::proc::spawn_listening(cmd);
    let pidfile = kit.path("restored.pid");
    let o = kit::crit_out(&[
        "restore",
        "-d",
        "--shell-job",
        "--lazy-pages",
        "--pidfile",
        pidfile.to_str().unwrap(),
        "-D",
        dst.to_str().unwrap(),
    ]);
    ok(&o);
    let restored: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(kit::proc::line(&result, 0), "OK 57344");
    finished(lp);
    let said = finished(dump);
    let sent: u64 = said
        .split("crit: page server: sent ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(sent >= 256 << 8, "{said}");
    // The source went once its pages had.
    assert!(unshare.wait_with_output().is_ok());
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    kit::dump::kill_tree(restored);
}

/// A daemon that goes before it has every page: the dump fails in one
/// line, removes its images and resumes the source, which finds its
/// memory intact. (A daemon without --page-server refuses the images.)
#[test]
fn a_daemon_that_leaves_early_gets_the_source_resumed() {
    let kit = Kit::new();
    let (s, dump) = Serving::start(&kit, "64");
    let (src, port) = (&s.src, &s.port);
    // A daemon without --page-server cannot serve these images: it says
    // so at once, before any restore comes.
    let o = kit::crit_out(&["lazy-pages", "-D", src.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.trim().lines().count() == 1 && e.contains("were left in the dumped task"),
        "{e}"
    );
    drop(std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap());
    let o = dump.wait_with_output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    // What it served, then the error, in one line.
    assert!(e.starts_with("crit: page server: sent 0 page(s)"), "{e}");
    assert!(
        e.lines()
            .last()
            .unwrap()
            .contains("left before it had every page (no CLOSE); the tree is resumed"),
        "{e}"
    );
    assert!(kit::dump::images(src).is_empty());
    s.runs_intact();
}

/// `crit dump --lazy-pages` stopped (SIGTERM) while it waits for a
/// daemon: its worker notices, removes the images and resumes the tree,
/// which runs on unharmed.
#[test]
fn a_lazy_dump_stopped_while_it_waits_resumes_the_tree() {
    let kit = Kit::new();
    let (s, dump) = Serving::start(&kit, "16");
    let (src, pid) = (&s.src, s.pid);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(dump.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let _ = dump.wait_with_output();
    let t = Instant::now();
    let traced = || {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .any(|l| l.starts_with("TracerPid:") && l.trim_end() != "TracerPid:\t0")
    };
    while traced() || !kit::dump::images(src).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the tree stays frozen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.runs_intact();
}

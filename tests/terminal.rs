//! A task on a pty whose master is outside the tree (what a container's
//! console is), through the command line: `crit dump --orphan-pts-master`
//! records the pty, and `crit restore --console-socket PATH` makes a new
//! one of the same index and sends its master there, as runc's console
//! socket protocol has it. The task answers on the new terminal, which
//! is still its controlling one. Also CRIU's `--action-script`: the
//! points of both engines, in order, with the root's pid where CRIU
//! gives one.

mod kit;
use kit::dump::*;
use kit::tty::converse;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

/// A new pty pair: the master (ours) and the slave's path.
fn open_pty() -> (OwnedFd, String) {
    use nix::fcntl::OFlag;
    let m = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).unwrap();
    nix::pty::grantpt(&m).unwrap();
    nix::pty::unlockpt(&m).unwrap();
    let name = nix::pty::ptsname_r(&m).unwrap();
    (m.into(), name)
}

fn script(log: &Path) -> String {
    format!(
        "echo \"$CRTOOLS_SCRIPT_ACTION ${{CRTOOLS_INIT_PID:-}}\" >> {}",
        log.display()
    )
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn a_pty_whose_master_is_outside_comes_back_as_a_new_one() {
    let kit = Kit::new();
    let (master, slave) = open_pty();
    let index: u32 = slave.trim_start_matches("/dev/pts/").parse().unwrap();
    let size = crit::sys::tty::Winsize {
        row: 21,
        col: 71,
        ..Default::default()
    };
    crit::sys::tty::set_winsize(master.as_fd(), &size).unwrap();
    let prog = kit.start("ptyjob", &[&slave]);
    assert!(converse(&master, "one").contains("got:one"));
    let img = kit.path("img");
    // Without the option the terminal is refused, and says what to use.
    let o = kit.dump(prog.pid, &img, &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--orphan-pts-master"), "{}", stderr(&o));
    assert!(alive(prog.pid));
    let dump_log = kit.path("dump-actions");
    ok(&kit.dump(
        prog.pid,
        &img,
        &["--orphan-pts-master", "--action-script", &script(&dump_log)],
    ));
    assert_eq!(lines(&dump_log), ["pre-dump", "post-dump"]);
    let mut prog = prog;
    let _ = prog.child.wait();
    // The old pty goes away with its master: its index is free again.
    drop(master);
    let o = kit.crit(&["restore", "-d", "-D", img.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--console-socket"), "{}", stderr(&o));
    assert!(!alive(prog.pid), "nothing is left of a failed restore");

    let sock = kit.path("console.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let got = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let (n, mut fds) = crit::sys::scm::recv(&conn, &mut buf).unwrap();
        (String::from_utf8_lossy(&buf[..n]).to_string(), fds.pop())
    });
    let restore_log = kit.path("restore-actions");
    let o = kit.crit(&[
        "restore",
        "-d",
        "-D",
        img.to_str().unwrap(),
        "--console-socket",
        sock.to_str().unwrap(),
        "--action-script",
        &script(&restore_log),
    ]);
    ok(&o);
    let (name, new) = got.join().unwrap();
    let new = new.expect("a master arrives on the console socket");
    let talk = converse(&new, "check");
    let got_size = crit::sys::tty::winsize(new.as_fd()).unwrap();
    let got_index = crit::sys::tty::pty_index(new.as_fd()).unwrap();
    let root = prog.pid;
    kill_tree(root);
    assert_eq!(name, "orphan-pts-master");
    assert!(talk.contains("got:check:OK"), "{talk:?}");
    assert_eq!((got_size.row, got_size.col), (21, 71), "window size kept");
    assert_eq!(got_index, index, "the same pts number");
    assert_eq!(
        lines(&restore_log),
        [
            "pre-restore".to_string(),
            format!("post-restore {root}"),
            "pre-resume".to_string(),
            "post-resume".to_string(),
        ]
    );
}

/// `--shell-job`: a job on a pty whose master is outside the tree (a
/// terminal emulator's, sshd's) comes back on the terminal crit restores
/// from, as criu --shell-job does, and not on its old pts even where that
/// still exists (it may be another session's by then).
#[test]
fn a_shell_job_comes_back_on_the_terminal_crit_restores_from() {
    use std::os::unix::fs::OpenOptionsExt;
    let kit = Kit::new();
    let (master, slave) = open_pty();
    let prog = kit.start("ptyjob", &[&slave]);
    assert!(converse(&master, "one").contains("got:one"));
    let img = kit.path("img");
    ok(&kit.dump(prog.pid, &img, &["--shell-job"]));
    let mut prog = prog;
    let _ = prog.child.wait();
    let (master2, slave2) = open_pty();
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave2)
        .unwrap();
    let o = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D", img.to_str().unwrap()])
        .stdin(tty)
        .output()
        .unwrap();
    let fd0 = std::fs::read_link(format!("/proc/{}/fd/0", prog.pid));
    ok(&o);
    let talk = converse(&master2, "two");
    kill_tree(prog.pid);
    drop(master);
    assert_eq!(fd0.unwrap().to_str(), Some(slave2.as_str()), "not {slave}");
    assert!(talk.contains("got:two"), "{talk:?}");
}

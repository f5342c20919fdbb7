//! Processes of a test: which exist, their children, killing and reaping.

use std::path::Path;
use std::time::{Duration, Instant};

/// Child pids of `pid` (zombies included), ascending, from
/// /proc/PID/task/*/children.
pub fn children(pid: i32) -> Vec<i32> {
    let mut v = Vec::new();
    if let Ok(d) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in d.flatten() {
            let s = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            v.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    v.sort_unstable();
    v
}

/// `pid` and all its descendants, parents before children.
pub fn tree(pid: i32) -> Vec<i32> {
    let mut all = vec![pid];
    let mut k = 0;
    while k < all.len() {
        all.extend(children(all[k]));
        k += 1;
    }
    all
}

/// Children of the test process, ascending.
pub fn my_children() -> Vec<i32> {
    children(std::process::id() as i32)
}

/// Whether `pid` exists and is traced (TracerPid other than 0).
pub fn traced(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("TracerPid:") && !l.ends_with("\t0"))
    })
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .chars()
                .next(),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

/// True while `pid` is in /proc, zombie or not (its pid is not free).
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// SIGKILL to `pid`; gone or not, no error.
pub fn kill_tree(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Reaps every child of the test process; children still alive after a
/// while (a test that failed half way) are killed first, so this never
/// blocks for good. Only under [`super::serial`]: the lock keeps any
/// other engine test of this process from having children to lose.
pub fn reap_all() {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    assert!(
        super::serial::held(),
        "reap_all waits for any child: call it under kit::serial::lock()"
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match waitpid(None, Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                if Instant::now() > deadline {
                    for c in my_children() {
                        kill_tree(c);
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
}

/// Reaps each pid (a task whose parent died comes to the subreaper a
/// moment later) until it is gone from /proc or `wait` passes; returns
/// the pids still there. It kills none: a check that a tree is gone after
/// a dump must not be answered by killing it.
pub fn reap(pids: &[i32], wait: Duration) -> Vec<i32> {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let deadline = Instant::now() + wait;
    let mut left = Vec::new();
    for &p in pids {
        loop {
            let _ = waitpid(
                nix::unistd::Pid::from_raw(p),
                Some(WaitPidFlag::__WALL | WaitPidFlag::WNOHANG),
            );
            if !exists(p) {
                break;
            }
            if Instant::now() >= deadline {
                left.push(p);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    left
}

/// Kills and reaps `pids` (waiting up to 20 s for them to go).
pub fn kill_and_reap(pids: &[i32]) {
    for &p in pids {
        kill_tree(p);
    }
    reap(pids, Duration::from_secs(20));
}

/// Sends SIGUSR1 to every task of the tree of `pid` (the self-checking
/// programs' cue), waits up to 10 s for `n` lines in `result`, then kills
/// the tree; returns what `result` holds.
pub fn ask_tree(pid: i32, result: &std::path::Path, n: usize) -> String {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for p in tree(pid) {
        let _ = kill(Pid::from_raw(p), Signal::SIGUSR1);
    }
    let t = std::time::Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(result).unwrap_or_default();
        if text.lines().count() >= n || t.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for p in tree(pid) {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    lines
}

/// Starts the test program NAME (tests/programs/NAME.c) with `args`, its
/// stdout a pipe, and waits for its first line ("READY ..."), returned.
pub fn start_ready(name: &str, args: &[&std::ffi::OsStr]) -> (std::process::Child, String) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(super::cc::program(name))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "{name}: {line}");
    (child, line)
}

/// Spawns `cmd` with `--status-fd 3` added (a crit server: page-server,
/// lazy-pages) and waits for the zero byte that says it listens.
pub fn spawn_listening(cmd: std::process::Command) -> std::process::Child {
    spawn_listening_then(cmd, &[])
}

/// [`spawn_listening`] with `tail` after `--status-fd 3` (runc wants its
/// options before the container's name).
pub fn spawn_listening_then(mut cmd: std::process::Command, tail: &[&str]) -> std::process::Child {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let (rd, wr) = nix::unistd::pipe().unwrap();
    let raw = wr.as_raw_fd();
    cmd.args(["--status-fd", "3"]).args(tail);
    // SAFETY: dup2 and fcntl are async-signal-safe; the write end goes to
    // fd 3 (without close-on-exec) in the child only.
    unsafe {
        cmd.pre_exec(move || {
            let r = if raw == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(raw, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(wr);
    let mut b = [1u8; 1];
    let n = std::fs::File::from(rd).read(&mut b).unwrap();
    assert_eq!((n, b[0]), (1, 0), "the server did not say it listens");
    child
}

/// Whether any mapping of `pid` is registered with a userfaultfd for
/// missing pages (`um` in its smaps flags).
pub fn uffd_registered(pid: i32) -> bool {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    smaps
        .lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .any(|f| f.split_whitespace().any(|x| x == "um"))
}

/// Runs `cmd` (a crit server) with `-d --pidfile PIDFILE` and returns
/// the daemon's pid: the command must have succeeded and, the moment it
/// returned, the pidfile must name a live crit (not waited for: whoever
/// starts a daemon reads its pidfile at once).
pub fn daemon_started(mut cmd: std::process::Command, pidfile: &Path) -> i32 {
    let o = cmd.args(["-d", "--pidfile"]).arg(pidfile).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(pidfile).expect("no pidfile when the command returned");
    let pid: i32 = text.trim().parse().expect("a pid in the pidfile");
    assert!(alive(pid), "pid {pid} of the pidfile is not running");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, Path::new(env!("CARGO_BIN_EXE_crit")));
    pid
}

/// Runs `cmd` (a crit server whose setup fails) with `-d --pidfile
/// PIDFILE`: it must exit 1 with one line, returned.
pub fn daemon_refused(mut cmd: std::process::Command, pidfile: &Path) -> String {
    let o = cmd.args(["-d", "--pidfile"]).arg(pidfile).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    e
}

/// The line a task wrote to `result` after `n` lines.
pub fn line(result: &Path, n: usize) -> String {
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(result).unwrap_or_default();
        if let Some(l) = text.lines().nth(n) {
            return l.to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(30), "no answer");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts test program `name` as the init of a pid namespace of its own
/// (`unshare -p -f`), so that a restore of it can run while the dumped
/// task still holds its pid here; returns that pid.
pub fn start_in_pid_ns(
    kit: &super::dump::Kit,
    name: &str,
    args: &[&str],
) -> (std::process::Child, i32) {
    use std::io::BufRead;
    let bin = kit.build(name);
    let mut child = std::process::Command::new("unshare")
        .args(["-p", "-f"])
        .arg(&bin)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run unshare");
    let mut r = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut ready = String::new();
    r.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "READY 1");
    std::mem::forget(r);
    let u = child.id();
    let kids = std::fs::read_to_string(format!("/proc/{u}/task/{u}/children")).unwrap();
    (child, kids.trim().parse().unwrap())
}

/// Gives SIGINT, SIGTERM, SIGHUP and SIGQUIT their default action in
/// the process `cmd` starts, as under a terminal: a shell's background
/// job or nohup (how CI may run the tests) ignores some of them, and
/// ignored dispositions are inherited.
pub fn with_default_signals(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: signal() is async-signal-safe and only resets
    // dispositions in the child.
    unsafe {
        cmd.pre_exec(|| {
            for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
                libc::signal(s, libc::SIG_DFL);
            }
            Ok(())
        })
    }
}

//! gens (tests/programs/gens.c): a task that keeps rewriting part of its
//! memory and, asked, checks every page against its table of
//! generations; the dumps that copy memory in several ways (pre-dump,
//! pre-copy, page server) restore it and ask it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Gens {
    pub child: std::process::Child,
    pub pid: i32,
    pub result: PathBuf,
    /// The region registered with the task's own userfaultfd.
    pub own: Option<u64>,
}

/// A test that fails leaves no task behind: one that is still this
/// process's child (not yet dumped and killed, nor reaped) is killed.
/// (A restored one is not a child; pids of reaped ones may be reused.)
impl Drop for Gens {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts gens (MIB MiB, rewriting HOT MiB at RATE pages/s).
pub fn start(tmp: &Path, mib: u32, hot: u32, rate: u32, forks: bool, uffd: bool) -> Gens {
    let result = tmp.join("result");
    let mut child = Command::new(super::cc::program("gens"))
        .args([mib.to_string(), hot.to_string(), rate.to_string()])
        .arg(&result)
        .args([if forks { "1" } else { "0" }, if uffd { "1" } else { "0" }])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut own = None;
    let mut r = BufReader::new(child.stdout.take().unwrap());
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "gens ended");
        if let Some(a) = line.trim().strip_prefix("OWN ") {
            own = Some(u64::from_str_radix(a, 16).unwrap());
        }
        if line.starts_with("READY") {
            break;
        }
    }
    let pid = child.id() as i32;
    Gens {
        child,
        pid,
        result,
        own,
    }
}

/// Has the task check itself (SIGUSR1); returns its answer.
pub fn ask(pid: i32, result: &Path) -> String {
    let before = std::fs::read_to_string(result).unwrap_or_default();
    let n = before.lines().count();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(result).unwrap_or_default();
        if let Some(l) = text.lines().nth(n) {
            return l.to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "pid {pid} did not answer"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn crit(args: &[&str]) -> std::process::Output {
    super::crit().args(args).output().unwrap()
}

pub fn ok(o: &std::process::Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "{e}");
    e
}

pub fn stats(dir: &Path) -> crit::image::pb::DumpStatsEntry {
    let s: crit::image::pb::StatsEntry =
        crit::image::typed::read_one(&dir.join("stats-dump"), "STATS").unwrap();
    s.dump.unwrap()
}

/// `crit restore -d --shell-job ARGS -D IMAGES`, tried again for up to
/// five seconds while it fails: a pid just freed may still be held a
/// moment by a slow reaper.
pub fn restore(images: &Path, args: &[&str]) -> std::process::Output {
    let t = Instant::now();
    loop {
        let mut all = vec!["restore", "-d", "--shell-job"];
        all.extend_from_slice(args);
        all.extend(["-D", images.to_str().unwrap()]);
        let r = crit(&all);
        if r.status.success() || t.elapsed() > Duration::from_secs(5) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills the task, restores `images` and has the restored task check
/// itself; returns its answer.
pub fn restore_and_ask(g: &mut Gens, images: &Path) -> String {
    super::proc::kill_tree(g.pid);
    let _ = g.child.wait();
    ok(&restore(images, &[]));
    let a = ask(g.pid, &g.result);
    super::proc::kill_tree(g.pid);
    super::proc::reap(&[g.pid], Duration::from_secs(5));
    a
}

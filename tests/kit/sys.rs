//! The kernel-layer tests (`sys_*`): spawn test programs with piped
//! stdio, read their state from /proc, kill and reap them.

pub use super::cc::program;
pub use super::proc::{children, kill_and_reap};

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// A spawned test process, killed and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub pid: i32,
    pub stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl Proc {
    /// Spawns `cmd` with piped stdin and stdout.
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn test program");
        let pid = child.id() as i32;
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            pid,
            stdin,
            lines: rx,
        }
    }

    /// Spawns a compiled test program.
    pub fn program(name: &str, args: &[&str]) -> Proc {
        Proc::spawn(Command::new(program(name)).args(args))
    }

    /// The next line of its stdout (bounded wait).
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("pid {}: no output line: {e}", self.pid))
    }

    /// A line if one comes within `d`.
    pub fn try_line(&self, d: Duration) -> Option<String> {
        self.lines.recv_timeout(d).ok()
    }

    pub fn write_stdin(&mut self, data: &[u8]) {
        let s = self.stdin.as_mut().expect("stdin");
        s.write_all(data).unwrap();
        s.flush().unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // Already reaped (by std, or by a ptrace wait that consumed its
        // exit): its pid may belong to someone else now; don't kill it.
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` until it holds or `TIMEOUT` passes; returns whether it held.
pub fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// State letter of a thread, from /proc/PID/task/TID/stat.
pub fn state(pid: i32, tid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().next()?.chars().next()
}

/// Thread ids of a process, sorted.
pub fn tids(pid: i32) -> Vec<i32> {
    let mut v: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// A field of /proc/PID/status.
pub fn status(pid: i32, field: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim().to_string())
    })
}

/// A hex mask field of /proc/PID/status (SigCgt, SigBlk, ...).
pub fn status_mask(pid: i32, field: &str) -> u64 {
    u64::from_str_radix(&status(pid, field).unwrap(), 16).unwrap()
}

/// The parent pid from /proc/PID/stat.
pub fn ppid(pid: i32) -> Option<i32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Not traced and not stopped by ptrace.
pub fn untraced(pid: i32) -> bool {
    status(pid, "TracerPid").as_deref() == Some("0")
        && tids(pid).iter().all(|&t| state(pid, t) != Some('t'))
}

/// Reads `n` u64 counters at `addr` of `pid`.
pub fn counters(pid: i32, addr: u64, n: usize) -> Vec<u64> {
    let mut buf = vec![0u8; n * 8];
    crit::sys::remote::read_exact(pid, addr, &mut buf).unwrap();
    buf.chunks(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect()
}

/// Starts spin_threads with `n` threads; returns it and the counters' address.
pub fn spinner(n: usize) -> (Proc, u64) {
    let p = Proc::program("spin_threads", &[&n.to_string()]);
    let line = p.line();
    let mut it = line.split_whitespace();
    let pid: i32 = it.next().unwrap().parse().unwrap();
    assert_eq!(pid, p.pid);
    let addr = u64::from_str_radix(it.next().unwrap(), 16).unwrap();
    assert!(wait_until(|| tids(pid).len() == n + 1));
    (p, addr)
}

/// Waits until every counter has moved past `before`.
pub fn all_counters_move(pid: i32, addr: u64, before: &[u64]) -> bool {
    wait_until(|| {
        counters(pid, addr, before.len())
            .iter()
            .zip(before)
            .all(|(now, was)| now != was)
    })
}

//! Helpers for the restore tests: lay out what the CRIU 4.2 fixture
//! programs expect, restore one, ask it to check itself, and clean up.
//! The test process is a child subreaper, so restored tasks come back to it
//! and are reaped by pid (never with a wait-for-any), freeing their pids.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Restore tests share pids, paths and ports: one at a time, across
/// threads (cargo test) and processes (cargo nextest).
pub static SERIAL: Mutex<()> = Mutex::new(());

pub struct Serial {
    _thread: std::sync::MutexGuard<'static, ()>,
    _process: nix::fcntl::Flock<std::fs::File>,
}

pub fn lock() -> Serial {
    let t = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open("/tmp/crit-restore-tests.lock")
        .expect("open the test lock file");
    let p = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the test lock file");
    Serial {
        _thread: t,
        _process: p,
    }
}

pub fn crit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crit"))
}

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

pub fn images(name: &str) -> PathBuf {
    testdata().join("criu-4.2").join(name)
}

/// What prepare-restore.sh does.
pub fn prepare() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    for d in ["bin", "sock", "k", "result"] {
        std::fs::create_dir_all(format!("/tmp/scen/{d}")).unwrap();
    }
    for e in std::fs::read_dir(testdata().join("criu-4.2-bin")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some() {
            continue;
        }
        let to = Path::new("/tmp/scen/bin").join(p.file_name().unwrap());
        let same = std::fs::read(&to).ok() == std::fs::read(&p).ok();
        if !same {
            let tmp = to.with_extension("tmp");
            std::fs::copy(&p, &tmp).unwrap();
            std::fs::rename(&tmp, &to).unwrap();
        }
        std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    std::fs::write("/tmp/scen/k/reg.txt", "0123456789").unwrap();
    let fifo = Path::new("/tmp/scen/k/fifo");
    let is_fifo = std::fs::symlink_metadata(fifo)
        .map(|m| std::os::unix::fs::FileTypeExt::is_fifo(&m.file_type()))
        .unwrap_or(false);
    if !is_fifo {
        let _ = std::fs::remove_file(fifo);
        nix::unistd::mkfifo(fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    }
}

/// The pids of a fixture's tree (pstree.img), read with crit itself.
pub fn pids(name: &str) -> Vec<i32> {
    let out = crit()
        .args(["decode", "-i"])
        .arg(images(name).join("pstree.img"))
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_i64().unwrap() as i32)
        .collect()
}

/// Panics with a clear message if a pid the fixture needs is taken.
pub fn require_free(name: &str) {
    for p in pids(name) {
        if Path::new(&format!("/proc/{p}")).exists() {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            panic!(
                "fixture {name} needs pid {p}, which is in use by '{}': free it and run again",
                comm.trim()
            );
        }
    }
}

/// Kills the restored tree and reaps each of its tasks by pid.
pub fn cleanup(name: &str) {
    let ps = pids(name);
    for &p in &ps {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for &p in &ps {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(p),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while ps.iter().any(|p| Path::new(&format!("/proc/{p}")).exists()) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn restore_detached(name: &str, extra: &[&str]) -> Output {
    restore_dir(&images(name), extra)
}

/// `crit restore -d -D DIR extra...` (an edited copy of a fixture).
pub fn restore_dir(dir: &Path, extra: &[&str]) -> Output {
    crit()
        .args(["restore", "-d", "-D"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

/// Sends SIGUSR1 to every task and returns what each wrote
/// (`NAME.main`, then `NAME.child` if the tree has a second process).
pub fn check(name: &str) -> Vec<String> {
    let ps = pids(name);
    let files: Vec<PathBuf> = (0..ps.len())
        .map(|i| {
            PathBuf::from(format!(
                "/tmp/scen/result/{name}.{}",
                if i == 0 { "main" } else { "child" }
            ))
        })
        .collect();
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    // Let the restored tasks settle before poking them.
    std::thread::sleep(Duration::from_millis(200));
    for &p in &ps {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGUSR1,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut out = Vec::new();
    for f in &files {
        loop {
            if let Ok(s) = std::fs::read_to_string(f) {
                if s.ends_with('\n') || s.starts_with("OK") || s.starts_with("FAIL") {
                    out.push(s.trim().to_string());
                    break;
                }
            }
            if Instant::now() > deadline {
                out.push(format!("no answer in {}", f.display()));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    out
}

/// Restores fixture `name` detached, checks every task answers OK.
pub fn restore_and_check(name: &str, extra: &[&str]) {
    let _g = lock();
    prepare();
    require_free(name);
    let out = restore_detached(name, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    if !out.status.success() {
        cleanup(name);
        panic!("crit restore {name} failed: {stderr}");
    }
    let answers = check(name);
    cleanup(name);
    for a in &answers {
        assert!(
            a.starts_with("OK"),
            "{name}: {a} (answers {answers:?}; crit said: {stderr})"
        );
    }
}

//! Helpers for the restore tests: lay out what the CRIU 4.2 fixture
//! programs expect, restore one, ask it to check itself, and clean up.
//! The test process is a child subreaper, so restored tasks come back to it
//! and are reaped by pid (never with a wait-for-any), freeing their pids.

pub use super::machine;
pub use super::{copy_fixture as copy_images, crit, fixture as images, testdata};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The engine lock ([`super::serial`]), which also clears the fixtures'
/// pids of what an earlier failed test left.
pub struct Serial {
    _lock: super::serial::Serial,
}

/// A test that failed half way must not leave a restored fixture behind:
/// it would hold the fixture's pids for every later run.
impl Drop for Serial {
    fn drop(&mut self) {
        kill_leftovers();
    }
}

/// Whether `pid` runs one of the fixture programs (a restored fixture).
fn is_fixture_program(pid: i32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p.starts_with("/tmp/scen/bin"))
}

/// Kills restored fixtures still holding a fixture pid (left by a test
/// that failed half way, in this run or an earlier one), and waits until
/// their pids are free. Other processes are never touched.
pub fn kill_leftovers() {
    let left: Vec<i32> = fixture_names()
        .iter()
        .flat_map(|n| ids(n))
        .filter(|&p| is_fixture_program(p))
        .collect();
    for &p in &left {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(p),
            Some(nix::sys::wait::WaitPidFlag::__WALL),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while left
        .iter()
        .any(|p| Path::new(&format!("/proc/{p}")).exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The fixtures restore with their dumped pids (26659 to 26901). Keep the
/// pids this run allocates from now on out of that range: past it when
/// the kernel's last pid is close below or inside it.
fn keep_pids_clear_of_fixtures() {
    const LOW: i64 = 26659 - 4000;
    const HIGH: i64 = 26910;
    let path = "/proc/sys/kernel/ns_last_pid";
    let last: i64 = std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        max > HIGH,
        "kernel.pid_max is {max}: the fixtures need pids up to 26901"
    );
    if (LOW..HIGH).contains(&last) {
        let _ = std::fs::write(path, HIGH.to_string());
    }
}

/// Names of the fixtures that are process trees.
pub fn fixture_names() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(testdata().join("criu-4.2"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pstree.img").exists())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn lock() -> Serial {
    let l = super::serial::lock();
    // Files the tests make must be readable by the fixtures' other users.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    keep_pids_clear_of_fixtures();
    kill_leftovers();
    Serial { _lock: l }
}

/// Whether this CPU can hold the fixtures' register state. They were
/// dumped on a CPU with AVX-512 that their glibc used; on a CPU without
/// it, crit must refuse them, naming what is missing: that is checked
/// (once) instead, and the caller skips what needs a restored fixture.
pub fn fixtures_fit_this_cpu() -> bool {
    static MISSING: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let missing = MISSING.get_or_init(|| {
        let mut all: Vec<String> = std::fs::read_dir(testdata().join("criu-4.2"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.join("pstree.img").exists())
            .flat_map(|d| machine::missing_components(&d))
            .collect();
        all.sort();
        all.dedup();
        all
    });
    if missing.is_empty() {
        return true;
    }
    let out = restore_dir(&images("counter"), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("which this CPU lacks"),
        "this CPU lacks {missing:?} that the fixtures use; crit should refuse: {err}"
    );
    eprintln!(
        "note: this CPU lacks {missing:?}, which the fixtures' tasks used; \
         checked that crit refuses them, skipping the restore itself"
    );
    false
}

/// [`prepare`], then whether the fixtures can be restored on this CPU
/// (see [`fixtures_fit_this_cpu`]).
#[must_use]
pub fn prepare_fixtures() -> bool {
    prepare();
    fixtures_fit_this_cpu()
}

/// What prepare-restore.sh does.
pub fn prepare() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    for d in ["bin", "sock", "k", "result"] {
        std::fs::create_dir_all(format!("/tmp/scen/{d}")).unwrap();
    }
    for e in std::fs::read_dir(testdata().join("criu-4.2-bin")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some() || p.is_dir() {
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

/// The pids and thread ids of a fixture's tree (pstree.img).
pub fn ids(name: &str) -> Vec<i32> {
    static CACHE: Mutex<Vec<(String, Vec<i32>)>> = Mutex::new(Vec::new());
    let mut c = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, v)) = c.iter().find(|(n, _)| n == name) {
        return v.clone();
    }
    let v = read_ids(name);
    c.push((name.to_string(), v.clone()));
    v
}

/// A fixture's pstree.img entries, decoded with crit itself.
fn pstree(name: &str) -> Vec<serde_json::Value> {
    let out = crit()
        .args(["decode", "-i"])
        .arg(images(name).join("pstree.img"))
        .output()
        .unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["entries"].as_array_mut().map(std::mem::take).unwrap()
}

fn read_ids(name: &str) -> Vec<i32> {
    let mut all = Vec::new();
    for e in pstree(name) {
        all.push(e["pid"].as_i64().unwrap() as i32);
        for t in e["threads"].as_array().into_iter().flatten() {
            all.push(t.as_i64().unwrap() as i32);
        }
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// The pids of a fixture's tree (pstree.img), read with crit itself.
pub fn pids(name: &str) -> Vec<i32> {
    pstree(name)
        .iter()
        .map(|e| e["pid"].as_i64().unwrap() as i32)
        .collect()
}

/// Whether the pids and thread ids fixture `name` needs are free. Panics
/// with a clear message if a process holds one. A kernel thread that holds
/// one (a kworker made while the pid counter went through the fixtures'
/// range) cannot be freed: that is said on stderr and the caller skips.
#[must_use]
pub fn require_free(name: &str) -> bool {
    if name == "kitchen" {
        // Its listener and UDP socket come back on their dumped ports.
        assert!(
            std::net::TcpListener::bind("127.0.0.1:45678").is_ok()
                && std::net::UdpSocket::bind("127.0.0.1:45679").is_ok(),
            "fixture kitchen needs TCP port 45678 and UDP port 45679 on 127.0.0.1: free them and run again"
        );
    }
    for p in ids(name) {
        if Path::new(&format!("/proc/{p}")).exists() {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            if is_kernel_thread(p) {
                eprintln!(
                    "SKIPPED: fixture {name} needs pid {p}, held by kernel thread '{}'",
                    comm.trim()
                );
                return false;
            }
            panic!(
                "fixture {name} needs pid {p}, which is in use by '{}': free it and run again",
                comm.trim()
            );
        }
    }
    true
}

/// PF_KTHREAD in the flags of /proc/PID/stat (its 9th field).
fn is_kernel_thread(pid: i32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let flags = stat
        .rsplit_once(") ")
        .and_then(|(_, rest)| rest.split(' ').nth(6))
        .and_then(|f| f.parse::<u64>().ok())
        .unwrap_or(0);
    flags & 0x0020_0000 != 0
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

/// The C library and loader the fixture programs ran with (Debian's
/// libc6 2.36-9+deb12u14), whose size and code their images depend on.
const FIXTURE_LIBS: [&str; 2] = ["libc.so.6", "ld-linux-x86-64.so.2"];
const LIB_DIR: &str = "/usr/lib/x86_64-linux-gnu";

/// Whether this machine's C library is the fixtures' own.
pub fn system_has_fixture_libs() -> bool {
    FIXTURE_LIBS.iter().all(|l| {
        let ours = std::fs::read(testdata().join("criu-4.2-bin/lib").join(l)).unwrap();
        std::fs::read(Path::new(LIB_DIR).join(l)).is_ok_and(|s| s == ours)
    })
}

/// `crit` as a restore of a fixture needs it: where this machine has
/// another C library, in a mount namespace of its own with the fixtures'
/// copies bound over it, so the restored programs map the code they ran
/// with. `always` does that even where the libraries are the same.
pub fn fixture_crit_with(always: bool) -> Command {
    if !always && system_has_fixture_libs() {
        return crit();
    }
    let lib = testdata().join("criu-4.2-bin/lib");
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--", "sh", "-ec"])
        .arg(
            "mount --bind \"$1\" \"$3/$(basename \"$1\")\"; \
             mount --bind \"$2\" \"$3/$(basename \"$2\")\"; \
             shift 3; exec \"$@\"",
        )
        .arg("sh")
        .arg(lib.join(FIXTURE_LIBS[0]))
        .arg(lib.join(FIXTURE_LIBS[1]))
        .arg(LIB_DIR)
        .arg(env!("CARGO_BIN_EXE_crit"));
    c
}

/// `crit` for restoring a fixture (see [`fixture_crit_with`]).
pub fn fixture_crit() -> Command {
    fixture_crit_with(false)
}

/// `crit restore -d -D DIR extra...` (an edited copy of a fixture).
pub fn restore_dir(dir: &Path, extra: &[&str]) -> Output {
    fixture_crit()
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
    if !prepare_fixtures() {
        return;
    }
    if !require_free(name) {
        return;
    }
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

/// Rewrites one image through its JSON form.
pub fn edit_json(path: &std::path::Path, f: impl FnOnce(&mut serde_json::Value)) {
    let out = crit().args(["decode", "-i"]).arg(path).output().unwrap();
    assert!(out.status.success());
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    f(&mut v);
    let mut c = crit()
        .args(["encode", "-o"])
        .arg(path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin.as_mut().unwrap(), v.to_string().as_bytes()).unwrap();
    drop(c.stdin.take());
    assert!(c.wait().unwrap().success());
}

/// Zeroes, in the pages image of `dir`, the pages task `pid`'s pagemap
/// marks lazy: a restore then has them only from a page server. Returns
/// how many bytes were zeroed.
pub fn zero_lazy_pages(dir: &std::path::Path, pid: i32) -> u64 {
    let (pages_id, entries) =
        crit::restore::plan::read_pagemap(&dir.join(format!("pagemap-{pid}.img")), Vec::new())
            .unwrap();
    let pages = dir.join(format!("pages-{pages_id}.img"));
    let mut data = std::fs::read(&pages).unwrap();
    let mut zeroed = 0;
    for r in crit::model::pagemap::lazy_runs(&entries) {
        if let crit::model::pagemap::Held::Here(off) = r.held {
            data[off as usize..(off + r.bytes()) as usize].fill(0);
            zeroed += r.bytes();
        }
    }
    std::fs::write(&pages, data).unwrap();
    zeroed
}

//! The vDSO on restore: a task that calls it through pointers it found at
//! start keeps working where this kernel's vDSO lands elsewhere and a
//! proxy stands at the old address (what a restore on another kernel
//! does; `--force-vdso-proxy` makes one on this kernel). The logic that
//! decides for a proxy and lays out its jumps is unit-tested on made-up
//! symbol tables (src/restore/vdso/proxy.rs).

mod kit;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Dumps the task `pid` into `dir`; it keeps running.
fn dump(pid: i32, dir: &Path) {
    let o = kit::crit()
        .args(["dump", "-R", "--shell-job", "-t", &pid.to_string(), "-D"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "dump: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Restores from `dir` and returns crit's log.
fn restore(dir: &Path, extra: &[&str]) -> String {
    let o = kit::crit()
        .args(["restore", "-d", "-v", "--shell-job", "-D"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "restore: {log}");
    log
}

/// Wakes the task and returns its verdict on its vDSO calls.
fn ask(pid: i32, result: &Path) -> String {
    let _ = std::fs::remove_file(result);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();
    let t = Instant::now();
    loop {
        let s = std::fs::read_to_string(result).unwrap_or_default();
        if s.ends_with('\n') || t.elapsed() > Duration::from_secs(10) {
            return s.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_task_calls_its_old_vdso_through_a_proxy_and_again_after_a_second_dump() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("rvdso");
    kit::cc::compile(
        &kit::cc::source("restore_programs", "rvdso"),
        &exe,
        &["-O1"],
    );
    let (ready, result) = (tmp.path().join("ready"), tmp.path().join("res"));
    let mut child = Command::new(&exe)
        .env("READY", &ready)
        .env("RESULT", &result)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let t = Instant::now();
    while !std::fs::read_to_string(&ready).is_ok_and(|s| s.ends_with('\n')) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "rvdso did not get ready"
        );
        assert!(child.try_wait().unwrap().is_none(), "rvdso failed at start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id() as i32;
    let res = tmp.path().join("res.main");
    let first = tmp.path().join("first");
    dump(pid, &first);
    kit::proc::kill_and_reap(&[pid]);
    let _ = child.wait();
    // The old address holds the proxy; this kernel's vDSO is elsewhere.
    let log = restore(&first, &["--force-vdso-proxy"]);
    assert!(log.contains("vdso proxy at"), "{log}");
    assert_eq!(ask(pid, &res), "OK moved", "{log}");
    // The proxy is plain memory now, dumped as such; a plain restore puts
    // this kernel's vDSO back where it was and the proxy leads there.
    let second = tmp.path().join("second");
    dump(pid, &second);
    kit::proc::kill_and_reap(&[pid]);
    let log = restore(&second, &[]);
    assert!(!log.contains("vdso proxy"), "{log}");
    assert_eq!(ask(pid, &res), "OK moved", "{log}");
    kit::proc::kill_and_reap(&[pid]);
}

#[test]
fn a_proxy_without_the_dumped_vdso_pages_is_refused_and_nothing_is_left() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, line) = kit::proc::start_ready("counter", &[]);
    let pid = child.id() as i32;
    let dir = tmp.path().join("img");
    dump(pid, &dir);
    kit::proc::kill_and_reap(&[pid]);
    let _ = child.wait();
    // Drop the vdso's entry from the pagemap (its pages stay unread).
    let pm = dir.join(format!("pagemap-{pid}.img"));
    let mm = dir.join(format!("mm-{pid}.img"));
    let mm_json = kit::crit_out(&["decode", "-i", mm.to_str().unwrap()]);
    let mm_json: serde_json::Value = serde_json::from_slice(&mm_json.stdout).unwrap();
    // VMA_AREA_VDSO is bit 3 of a mapping's status.
    let vdso = mm_json["entries"][0]["vmas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["status"].as_u64().unwrap() & 8 != 0)
        .unwrap()["start"]
        .as_u64();
    kit::restore::edit_json(&pm, |j| {
        let e = j["entries"].as_array_mut().unwrap();
        let before = e.len();
        e.retain(|x| x["vaddr"].as_u64() != vdso);
        assert_eq!(e.len(), before - 1, "{line}");
    });
    let o = kit::crit()
        .args(["restore", "-d", "--shell-job", "--force-vdso-proxy", "-D"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("vdso proxy needs the dumped vdso's pages"),
        "{err}"
    );
    assert!(!kit::proc::exists(pid), "pid {pid} was left behind");
}

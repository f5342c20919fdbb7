//! The vDSO on restore: a task that calls it through pointers it found at
//! start keeps working where this kernel's vDSO lands elsewhere and a
//! proxy stands at the old address (what a restore on another kernel
//! does: made here by `--force-vdso-proxy`, or by a dumped vDSO whose
//! symbol table was changed). The logic that
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

/// Starts tests/restore_programs/rvdso.c in `tmp`; returns it and the
/// file its answers go to.
fn start_rvdso(tmp: &Path) -> (std::process::Child, std::path::PathBuf) {
    let exe = tmp.join("rvdso");
    kit::cc::compile(
        &kit::cc::source("restore_programs", "rvdso"),
        &exe,
        &["-O1"],
    );
    let (ready, result) = (tmp.join("ready"), tmp.join("res"));
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
    (child, tmp.join("res.main"))
}

/// Where the pages of task `pid`'s dumped vdso begin in the pages image
/// of `dir`, and the vdso's length.
fn vdso_in_images(dir: &Path, pid: i32) -> (u64, u64) {
    let decode = |name: String| -> serde_json::Value {
        let o = kit::crit_out(&["decode", "-i", dir.join(name).to_str().unwrap()]);
        serde_json::from_slice(&o.stdout).unwrap()
    };
    // VMA_AREA_VDSO is bit 3 of a mapping's status.
    let mm = decode(format!("mm-{pid}.img"));
    let v = mm["entries"][0]["vmas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["status"].as_u64().unwrap() & 8 != 0)
        .unwrap();
    let (start, end) = (v["start"].as_u64().unwrap(), v["end"].as_u64().unwrap());
    let pm = decode(format!("pagemap-{pid}.img"));
    let mut off = 0;
    for e in &pm["entries"].as_array().unwrap()[1..] {
        if e["vaddr"].as_u64() == Some(start) {
            return (off, end - start);
        }
        // Pages this image holds: present (4) and not in a parent (1).
        if e["flags"].as_u64().unwrap() & 5 == 4 {
            off += e["nr_pages"].as_u64().unwrap() * 4096;
        }
    }
    panic!("no pages of the vdso at {start:#x}");
}

/// Start addresses of task `pid`'s mappings in the mm image of `dir`
/// whose status has `bit` (8: VMA_AREA_VDSO, 4096: VMA_AREA_VVAR).
fn with_status(dir: &Path, pid: i32, bit: u64) -> Vec<u64> {
    let mm = dir.join(format!("mm-{pid}.img"));
    let o = kit::crit_out(&["decode", "-i", mm.to_str().unwrap()]);
    let mm: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    mm["entries"][0]["vmas"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["status"].as_u64().unwrap() & bit != 0)
        .map(|v| v["start"].as_u64().unwrap())
        .collect()
}

#[test]
fn a_task_calls_its_old_vdso_through_a_proxy_and_again_after_a_second_dump() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, res) = start_rvdso(tmp.path());
    let pid = child.id() as i32;
    let first = tmp.path().join("first");
    dump(pid, &first);
    kit::proc::kill_and_reap(&[pid]);
    let _ = child.wait();
    let (vdso, vvar) = (with_status(&first, pid, 8), with_status(&first, pid, 4096));
    assert_eq!(
        (vdso.len(), vvar.len()),
        (1, 1),
        "one vdso and one vvar dumped"
    );
    // The old address holds the proxy; this kernel's vDSO is elsewhere.
    let log = restore(&first, &["--force-vdso-proxy"]);
    assert!(
        log.contains(&format!("vdso proxy at {:#x}", vdso[0])),
        "{log}"
    );
    assert_eq!(kit::gens::ask(pid, &res), "OK moved", "{log}");
    // The restore marked this kernel's vDSO: the next dump stores the
    // proxy as the task's vDSO and the old vvar's place as its vvar, and
    // leaves this kernel's vDSO and vvar out (as CRIU's dump does).
    let second = tmp.path().join("second");
    dump(pid, &second);
    assert_eq!(with_status(&second, pid, 8), vdso);
    assert_eq!(with_status(&second, pid, 4096), vvar);
    // Another proxy takes the place of the first (its jumps replaced,
    // not one more hop), and a dump after it looks the same again.
    kit::proc::kill_and_reap(&[pid]);
    let log = restore(&second, &["--force-vdso-proxy"]);
    assert!(
        log.contains(&format!("vdso proxy at {:#x}", vdso[0])),
        "{log}"
    );
    assert_eq!(kit::gens::ask(pid, &res), "OK moved", "{log}");
    let third = tmp.path().join("third");
    dump(pid, &third);
    assert_eq!(with_status(&third, pid, 8), vdso);
    assert_eq!(with_status(&third, pid, 4096), vvar);
    // On the kernel the task started on, a plain restore puts this
    // kernel's vDSO and vvar back where they first were: no proxy left.
    kit::proc::kill_and_reap(&[pid]);
    let log = restore(&third, &[]);
    assert!(!log.contains("vdso proxy"), "{log}");
    assert_eq!(kit::gens::ask(pid, &res), "OK same", "{log}");
    kit::proc::kill_and_reap(&[pid]);
}

/// The dumped vDSO made another kernel's: the name of a function the
/// task does not call changed in its symbol table. The restore finds
/// other functions and makes a proxy by itself.
#[test]
fn a_vdso_whose_symbols_differ_gets_a_proxy_by_itself() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let (mut child, res) = start_rvdso(tmp.path());
    let pid = child.id() as i32;
    let dir = tmp.path().join("img");
    dump(pid, &dir);
    kit::proc::kill_and_reap(&[pid]);
    let _ = child.wait();
    let (off, len) = vdso_in_images(&dir, pid);
    let pages = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pages-")
        })
        .unwrap();
    let mut bytes = std::fs::read(&pages).unwrap();
    let vdso = &mut bytes[off as usize..(off + len) as usize];
    // A function rvdso does not call (getrandom on Linux 6.11 and later).
    let used = [
        "clock_gettime",
        "clock_getres",
        "gettimeofday",
        "time",
        "getcpu",
    ];
    let at = (0..vdso.len() - 8)
        .find(|&i| {
            let rest = &vdso[i..];
            let name = rest.split(|&c| c == 0).nth(1).unwrap_or_default();
            rest[0] == 0
                && name.starts_with(b"__vdso_")
                && !used.iter().any(|u| &name[7..] == u.as_bytes())
        })
        .expect("the vdso exports a function rvdso does not call");
    vdso[at + 8] ^= 0x20;
    std::fs::write(&pages, &bytes).unwrap();
    let log = restore(&dir, &[]);
    assert!(
        log.contains("vdso proxy at") && log.contains("other offsets"),
        "{log}"
    );
    assert_eq!(kit::gens::ask(pid, &res), "OK moved", "{log}");
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

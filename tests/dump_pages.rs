//! How pages reach the pages image. Normally the task puts them into
//! pipes and crit splices them into the file (one copy); a task at its
//! descriptor limit cannot make those pipes, and its pages are read with
//! process_vm_readv instead. Either way the restored task finds its
//! memory intact (tests/programs/scale.c checks every 512th byte), also
//! pages the task itself may not read (tests/programs/protnone.c), and
//! mappings of every kind of private anonymous memory
//! (tests/programs/memkinds.c: locked, growsdown, read-only, PROT_NONE
//! in part and whole), which the restore writes in different ways.

mod kit;

use std::process::Command;
use std::time::{Duration, Instant};

/// Starts the scale tree (`tasks` tasks of `mib` MiB, the root holding
/// 16 descriptors); returns it and its root's pid once it is ready.
fn start(tasks: u32, mib: u32, result: &std::path::Path) -> (std::process::Child, i32) {
    let (tasks, mib) = (tasks.to_string(), mib.to_string());
    let args = [
        tasks.as_ref(),
        mib.as_ref(),
        "16".as_ref(),
        result.as_os_str(),
    ];
    let (child, line) = kit::proc::start_ready("scale", &args);
    let pid: i32 = line.trim().strip_prefix("READY ").unwrap().parse().unwrap();
    (child, pid)
}

/// Dumps and restores the tree of `pid` (restricted first by `limit`),
/// has every task check itself and returns the dump's debug log.
fn round_trip(
    child: &mut std::process::Child,
    tasks: usize,
    result: &std::path::Path,
    limit: impl FnOnce(i32),
) -> String {
    let dir = tempfile::tempdir().unwrap();
    round_trip_in(child, tasks, result, limit, &dir.path().join("img"))
}

/// [`round_trip`] with the images kept in `images`.
fn round_trip_in(
    child: &mut std::process::Child,
    tasks: usize,
    result: &std::path::Path,
    limit: impl FnOnce(i32),
    images: &std::path::Path,
) -> String {
    let pid = child.id() as i32;
    let pids = kit::proc::tree(pid);
    assert_eq!(pids.len(), tasks);
    limit(pid);
    let d = kit::crit()
        .args(["dump", "-vv", "-t", &pid.to_string(), "-D"])
        .arg(images)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&d.stderr).to_string();
    assert!(d.status.success(), "{log}");
    // The dumped tree is gone; its pids must be free for the restore.
    let _ = child.wait();
    let t = Instant::now();
    while pids.iter().any(|&p| kit::proc::exists(p)) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(images)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines = kit::proc::ask_tree(pid, result, tasks);
    assert_eq!(lines.lines().count(), tasks, "answers: {lines}");
    assert!(
        lines.lines().all(|l| l.starts_with("OK")),
        "answers: {lines}"
    );
    log
}

/// The descriptors of the (one) task in `images`: the entries of its
/// fdinfo image.
fn fds_dumped(images: &std::path::Path) -> usize {
    let f = std::fs::read_dir(images)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("/fdinfo-"))
        .expect("an fdinfo image");
    let out = kit::crit().arg("show").arg(&f).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["entries"].as_array().unwrap().len()
}

/// "pages copied: N MiB, M MiB of it through pipes" from the dump log.
fn copied(log: &str) -> (u64, u64) {
    let l = log
        .lines()
        .find_map(|l| l.split("pages copied: ").nth(1))
        .unwrap_or_else(|| panic!("no page count in the log: {log}"));
    let n: Vec<u64> = l
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    (n[0], n[1])
}

#[test]
fn pages_go_through_pipes() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let (mut child, _) = start(4, 16, &result);
    let log = round_trip(&mut child, 4, &result, |_| {});
    let (all, piped) = copied(&log);
    assert!(all >= 64, "{all} MiB copied");
    assert_eq!(piped, all, "every page through a pipe: {log}");
}

/// Dumps and restores one task of `mib` MiB (images kept in `dir`),
/// checks that every page went through a pipe and that exactly the task's
/// descriptors were dumped, and returns the task's pid and the dump log.
fn big_round_trip(mib: u32, dir: &std::path::Path) -> (i32, String) {
    let result = dir.join("result");
    let (mut child, pid) = start(1, mib, &result);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let images = dir.join("img");
    let log = round_trip_in(&mut child, 1, &result, |_| {}, &images);
    assert_eq!(fds_dumped(&images), fds, "{log}");
    let (all, piped) = copied(&log);
    assert!(all >= mib as u64, "{all} MiB copied");
    assert_eq!(piped, all, "every page through a pipe: {log}");
    (pid, log)
}

#[test]
fn a_big_task_has_its_descriptors_scanned_beside_its_memory() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    // 96 MiB: over the size from which the descriptors are scanned on a
    // helper thread while the injection makes (and closes) pipes in the
    // task; none of those may be taken for the task's own.
    let (_, log) = big_round_trip(96, dir.path());
    assert!(
        log.contains("descriptor(s) scanned beside the memory work"),
        "{log}"
    );
}

#[test]
fn a_big_task_s_pages_are_queued_in_two_parts() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    // 192 MiB: the first 64 MiB of the address space are read and their
    // pages queued before the rest is read, the descriptors listed while
    // the injection makes and closes its pipes; the task checks every
    // page after the restore.
    let (pid, log) = big_round_trip(192, dir.path());
    assert!(log.contains("pages read in two parts"), "{log}");
    // One read would have given the same entries: none continues the one
    // before it with the same flags (the two parts joined at their edge).
    let (_, entries) = crit::restore::plan::read_pagemap(
        &dir.path().join("img").join(format!("pagemap-{pid}.img")),
        Vec::new(),
    )
    .unwrap();
    for w in entries.windows(2) {
        let end = w[0].vaddr + w[0].nr_pages.unwrap_or(0) * 4096;
        assert!(
            !(end == w[1].vaddr && w[0].flags == w[1].flags),
            "entries left apart: {:?} {:?}",
            w[0],
            w[1]
        );
    }
}

/// The mappings of `pid` maps shows (start, end).
fn mappings(pid: i32) -> Vec<(u64, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .map(|l| {
            let r = l.split_whitespace().next().unwrap();
            let (a, b) = r.split_once('-').unwrap();
            (
                u64::from_str_radix(a, 16).unwrap(),
                u64::from_str_radix(b, 16).unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_injection_s_own_mapping_is_never_dumped() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    // smaps is read beside the injection, which maps memory of its own
    // in the task for a while: a race, so several dumps (with -R).
    let (mut child, pid) = start(1, 192, &result);
    struct Kill(i32);
    impl Drop for Kill {
        fn drop(&mut self) {
            kit::proc::kill_tree(self.0);
        }
    }
    let _kill = Kill(pid);
    let before = mappings(pid);
    for round in 0..6 {
        let images = dir.path().join(format!("img{round}"));
        let d = kit::crit()
            .args(["dump", "-R", "-t", &pid.to_string(), "-D"])
            .arg(&images)
            .output()
            .unwrap();
        assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
        let out = kit::crit()
            .arg("show")
            .arg(images.join(format!("mm-{pid}.img")))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let hex = |x: &serde_json::Value| {
            u64::from_str_radix(x.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        let dumped: Vec<(u64, u64)> = v["entries"][0]["vmas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (hex(&m["start"]), hex(&m["end"])))
            .collect();
        // Each dumped VMA starts where one of the task's does (the vDSO's
        // data pages, two mappings, are one VMA, as for CRIU).
        assert!(
            dumped.len() + 1 >= before.len(),
            "round {round}: {dumped:x?}"
        );
        for d in &dumped {
            assert!(
                before.iter().any(|b| b.0 == d.0),
                "round {round}: {d:x?} is not the task's: {before:x?}"
            );
        }
        assert_eq!(mappings(pid), before, "round {round}: the task's own");
    }
    drop(_kill);
    let _ = child.wait();
}

#[test]
fn a_task_at_its_descriptor_limit_is_read_directly() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    let (mut child, _) = start(1, 16, &result);
    // One descriptor free below the limit (the lowest free number, for
    // the task's own check after the restore): too few for a pipe.
    let log = round_trip(&mut child, 1, &result, |pid| {
        let open: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        let limit = (0..).find(|n| !open.contains(n)).unwrap() + 1;
        let st = Command::new("prlimit")
            .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
            .status()
            .unwrap();
        assert!(st.success());
    });
    let (all, piped) = copied(&log);
    assert!(all >= 16, "{all} MiB copied");
    assert_eq!(piped, 0, "no pipe could be made: {log}");
}

#[test]
fn pages_the_task_cannot_read_are_dumped_too() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    // Two of its pages are PROT_NONE: neither its vmsplice nor
    // process_vm_readv can take them; /proc/PID/mem can.
    let (mut child, _) = kit::proc::start_ready("protnone", &[result.as_os_str()]);
    round_trip(&mut child, 1, &result, |_| {});
}

#[test]
fn anonymous_memory_of_every_kind_comes_back() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    // A whole PROT_NONE mapping: the reads that take it start with a
    // piece nothing can read but /proc/PID/mem.
    let (mut child, _) = kit::proc::start_ready("memkinds", &[result.as_os_str()]);
    round_trip(&mut child, 1, &result, |_| {});
}

/// The ranges of `pid`'s mappings that smaps shows locked ("lo").
fn locked_ranges(pid: i32) -> Vec<(u64, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap();
    let mut out = Vec::new();
    let mut range = None;
    for l in smaps.lines() {
        if let Some(flags) = l.strip_prefix("VmFlags:") {
            if flags.split_whitespace().any(|f| f == "lo") {
                out.extend(range);
            }
        } else if let Some((a, b)) = l.split_whitespace().next().and_then(|r| r.split_once('-')) {
            // A mapping's first line ("start-end perms ..."); the
            // counters' lines have no '-' in their first word.
            if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                range = Some((a, b));
            }
        }
    }
    out
}

#[test]
fn a_big_task_s_locked_pages_are_not_lazy() {
    let _g = kit::serial::lock();
    let dir = tempfile::tempdir().unwrap();
    let result = dir.path().join("result");
    // 24 MiB of each kind: a task this big has its pages queued from
    // what maps shows while smaps, which alone shows the lock, is read;
    // the pagemap entries must then follow smaps (CRIU marks no locked
    // page lazy, and a lazy restore must not leave them to faults).
    let (mut child, _) = kit::proc::start_ready("memkinds", &[result.as_os_str(), "24".as_ref()]);
    let pid = child.id() as i32;
    let locked = locked_ranges(pid);
    assert_eq!(locked.len(), 1, "one locked mapping: {locked:?}");
    let (lo, hi) = locked[0];
    let images = dir.path().join("img");
    let log = round_trip_in(&mut child, 1, &result, |_| {}, &images);
    assert!(
        log.contains("descriptor(s) scanned beside the memory work"),
        "{log}"
    );
    let (_, entries) =
        crit::restore::plan::read_pagemap(&images.join(format!("pagemap-{pid}.img")), Vec::new())
            .unwrap();
    let (mut in_locked, mut lazy_elsewhere) = (0, 0);
    for e in &entries {
        let end = e.vaddr + e.nr_pages.unwrap_or(0) * 4096;
        let lazy = e.flags.unwrap_or(0) & crit::image::flags::PE_LAZY != 0;
        if e.vaddr < hi && end > lo {
            assert!(
                e.vaddr >= lo && end <= hi,
                "an entry across the lock's edge: {e:?}"
            );
            assert!(!lazy, "a locked page marked lazy: {e:?}");
            in_locked += e.nr_pages.unwrap_or(0);
        } else if lazy {
            lazy_elsewhere += e.nr_pages.unwrap_or(0);
        }
    }
    assert_eq!(in_locked, (hi - lo) / 4096, "every locked page dumped");
    assert!(
        lazy_elsewhere >= 3 * 24 * 256,
        "the other kinds stay lazy: {lazy_elsewhere}"
    );
}

//! Task state a dump and a restore must keep (tests/programs/states.c):
//! the restored task checks its own state and answers.

mod kit;

use kit::dump::*;
use std::path::Path;

/// Dumps the tree of states.c in `mode` (`n` tasks, each answering),
/// lets it go, restores it and returns what its tasks say of their
/// state.
fn round_trip(kit: &Kit, mode: &str, n: usize) -> String {
    round_trip_edited(kit, mode, n, |_| {})
}

/// As [`round_trip`], with `edit` run on the images directory between
/// the dump and the restore.
fn round_trip_edited(kit: &Kit, mode: &str, n: usize, edit: impl FnOnce(&Path)) -> String {
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let args = [mode, result.to_str().unwrap(), hb.to_str().unwrap()];
    kit.round_trip("states", &args, &result, n, edit)
}

/// A mode by hand: `STATES_MODE=fds [STATES_N=2] cargo test --test
/// dump_states probe -- --ignored --nocapture` prints what it answers.
#[test]
#[ignore]
fn probe() {
    let mode = std::env::var("STATES_MODE").unwrap();
    let n: usize = std::env::var("STATES_N").map_or(1, |n| n.parse().unwrap());
    let kit = Kit::new();
    let a = round_trip(&kit, &mode, n);
    println!("ANSWER {mode}: {a}");
    assert_eq!(a.lines().filter(|l| l.starts_with("OK")).count(), n, "{a}");
}

/// Pipes and a fifo given another capacity (F_SETPIPE_SZ), bigger and
/// smaller than the default: the dump recorded it, the restore made
/// them of the default size (a writer counting on the room blocked).
#[test]
fn pipe_sizes_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "pipe-size", 1);
    assert!(a.starts_with("OK"), "{a}");
}

/// A task chrooted into a directory, its cwd inside: the images name
/// both from the machine's root (as CRIU's do) and the restore looked the
/// cwd up inside the new root ("chdir ...: ENOENT"). It enters the cwd
/// first now.
#[test]
fn a_chrooted_task_comes_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "chroot", 1);
    assert!(a.starts_with("OK"), "{a}");
}

/// A pipe with O_ASYNC, an owner and F_SETSIG: the owner and signal came
/// back but not O_ASYNC, so no signal came when data arrived.
#[test]
fn o_async_comes_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "fown", 1);
    assert!(a.starts_with("OK"), "{a}");
}

/// MADV_RANDOM and MADV_SEQUENTIAL: the dump recorded them, the restore
/// left them out.
#[test]
fn random_and_sequential_advice_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "madvise", 1);
    assert!(a.starts_with("OK"), "{a}");
}

/// pidfds of a child (one PIDFD_NONBLOCK, one dup'ed without
/// close-on-exec) and of the task itself: crit dump refused them, and
/// crit restore CRIU's images of them. Each comes back naming its task,
/// with its flags, and signals and waits work.
#[test]
fn pidfds_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "pidfd", 2);
    assert_eq!(a.lines().filter(|l| l.starts_with("OK")).count(), 2, "{a}");
}

/// pidfds of processes reaped since (two of one, one PIDFD_NONBLOCK, and
/// one of another): crit dump refused them. Recorded with no pid, as
/// CRIU 4.2 records them, they come back naming exited processes of
/// crit's: no pid, one process for the first two, ESRCH to a signal,
/// readable to poll.
#[test]
fn pidfds_of_exited_processes_come_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "pidfd-exited", 1);
    assert!(a.starts_with("OK"), "{a}");
}

/// CRIU 4.2 records the personality as atoi reads /proc/PID/personality
/// (60000 for 0x00060000); crit restored that number as it was. The
/// images of the prctl mode (UNAME26 | ADDR_NO_RANDOMIZE) are given
/// CRIU's form of it before the restore.
#[test]
fn a_personality_in_criu_form_comes_back() {
    let kit = Kit::new();
    let a = round_trip_edited(&kit, "prctl", 2, |dir| {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("core-") {
                continue;
            }
            kit::restore::edit_json(&p, |v| {
                // Threads other than the main one have no task core.
                let Some(tc) = v["entries"][0].get_mut("tc") else {
                    return;
                };
                if let Some(n) = tc["personality"].as_u64() {
                    let criu: u64 = format!("{n:08x}").parse().unwrap();
                    tc["personality"] = serde_json::json!(criu);
                }
            });
        }
    });
    assert_eq!(a.lines().filter(|l| l.starts_with("OK")).count(), 2, "{a}");
}

/// A working directory removed under the task: the dump refused it
/// ("was deleted and is not a regular file"); CRIU 4.2 keeps it as a
/// ghost directory. It comes back removed, and still the task's cwd.
#[test]
fn a_removed_working_directory_comes_back() {
    let kit = Kit::new();
    let a = round_trip(&kit, "cwd-deleted", 1);
    assert!(a.starts_with("OK"), "{a}");
}

/// States that came back from the first probe on: kept from regressing.
#[test]
fn other_states_come_back() {
    for (mode, n) in [
        ("signals", 1),
        ("itimers", 1),
        ("prctl", 2),
        ("limits", 1),
        ("fds", 1),
        ("timerfd-ticks", 1),
        ("memfd", 1),
        ("memfd-map", 1),
        ("inotify", 1),
        ("fanotify", 1),
        ("memory", 2),
        ("threads", 1),
        ("nofile-low", 1),
        ("sched", 1),
        ("sigflags", 1),
    ] {
        let kit = Kit::new();
        let a = round_trip(&kit, mode, n);
        assert_eq!(
            a.lines().filter(|l| l.starts_with("OK")).count(),
            n,
            "{mode}: {a}"
        );
    }
}

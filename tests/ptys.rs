//! Pty pairs both of whose ends the tree holds (tests/programs/ptys.c):
//! one task with a master and its slave; a parent with the master of a
//! pty that is the controlling terminal of its child's session, whose
//! grandchild's group is in the foreground (tmux's and script's shape);
//! several pairs at once. After a restore each task checks its own ptys:
//! the same numbers, settings, sizes, packet mode, session, controlling
//! terminal and foreground group, and data both ways. A pty index taken
//! on this machine meanwhile fails the restore in one line naming it, and
//! nothing is left behind.

mod kit;

use crit::image::pb;
use kit::dump::*;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The program's result file and heartbeat.
fn args(kit: &Kit) -> (PathBuf, PathBuf) {
    (kit.path("result"), kit.path("hb"))
}

fn tty_infos(img: &Path) -> Vec<pb::TtyInfoEntry> {
    crit::image::typed::read_all(&img.join("tty-info.img"), "TTY_INFO").unwrap()
}

/// files.img's TTY entries, each with its path (the REG entry its
/// regf_id names).
fn tty_files(img: &Path) -> Vec<(pb::TtyFileEntry, String)> {
    let all: Vec<pb::FileEntry> =
        crit::image::typed::read_all(&img.join("files.img"), "FILES").unwrap();
    let path = |id: Option<u32>| {
        all.iter()
            .find(|f| Some(f.id) == id)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    all.iter()
        .filter_map(|f| f.tty)
        .map(|t| {
            let p = path(t.regf_id);
            (t, p)
        })
        .collect()
}

/// Runs ptys.c in `mode`, dumps it with `dump` options, lets `look` see
/// the images, restores it (`--shell-job`: the root's session is the
/// test's) and returns what its `n` tasks say of themselves.
fn round_trip(kit: &Kit, mode: &str, n: usize, dump: &[&str], look: impl FnOnce(&Path)) -> String {
    let (result, hb) = args(kit);
    let mut prog = kit.start(
        "ptys",
        &[result.to_str().unwrap(), hb.to_str().unwrap(), mode],
    );
    let tree = kit::proc::tree(prog.pid);
    let img = kit.path("img");
    ok(&kit.dump(prog.pid, &img, dump));
    let _ = prog.child.wait();
    let left = reap(&tree, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "still there after the dump: {left:?}");
    look(&img);
    ok(&kit.crit(&["restore", "-d", "--shell-job", "-D", img.to_str().unwrap()]));
    kit::proc::ask_tree(prog.pid, &result, n)
}

fn count_ok(answers: &str) -> usize {
    answers.lines().filter(|l| l.starts_with("OK")).count()
}

/// Master and slave in one task, dumped with --shell-job as script(1)
/// run from a shell would be: the pair is no shell job's terminal and
/// goes in as a pty (tty-info ids 2N and 2N+1, CRIU's), not as a file.
#[test]
fn one_task_holds_both_ends() {
    let kit = Kit::new();
    let answers = round_trip(&kit, "one", 1, &["--shell-job"], |img| {
        let infos = tty_infos(img);
        let index = infos[0].pty.as_ref().unwrap().index;
        let mut ids: Vec<u32> = infos.iter().map(|i| i.id).collect();
        ids.sort();
        assert_eq!(ids, [2 * index, 2 * index + 1]);
        let master = infos.iter().find(|i| i.id & 1 == 1).unwrap();
        assert!(master.packet_mode, "{master:?}");
        assert_eq!((master.sid, master.pgrp), (0, 0), "no session's terminal");
        let mut paths: Vec<String> = tty_files(img).into_iter().map(|(_, p)| p).collect();
        paths.sort();
        assert_eq!(
            paths,
            ["/dev/ptmx".to_string(), format!("/dev/pts/{index}")]
        );
    });
    assert_eq!(count_ok(&answers), 1, "{answers}");
}

/// tmux's shape and two pairs: P holds pair A and B's master, B is the
/// controlling terminal of C's session with G's group in the foreground.
#[test]
fn a_session_on_a_pty_whose_master_its_parent_holds() {
    let kit = Kit::new();
    let answers = round_trip(&kit, "tree", 3, &[], |img| {
        let tree: Vec<pb::PstreeEntry> =
            crit::image::typed::read_all(&img.join("pstree.img"), "PSTREE").unwrap();
        let (c, g) = (tree[1].pid, tree[2].pid);
        let infos = tty_infos(img);
        assert_eq!(infos.len(), 4, "{infos:?}");
        // B: both ends name C's session and G's group.
        let b: Vec<_> = infos.iter().filter(|i| i.sid != 0).collect();
        assert_eq!(b.len(), 2, "{infos:?}");
        assert!(b.iter().all(|i| (i.sid, i.pgrp) == (c, g)), "{b:?}");
        assert_eq!(b[0].id >> 1, b[1].id >> 1);
        // Four open files: A's master and slave, B's master, B's slave
        // (C's fds 0-2 and G's share one).
        assert_eq!(tty_files(img).len(), 4);
    });
    assert_eq!(count_ok(&answers), 3, "{answers}");
}

/// Opens ptmx until the kernel gives pty `index`, which stays taken
/// while the returned master is open.
fn take_index(index: u32) -> OwnedFd {
    use std::os::unix::fs::OpenOptionsExt;
    let mut lower = Vec::new();
    loop {
        let f: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open("/dev/ptmx")
            .unwrap()
            .into();
        let got = crit::sys::tty::pty_index(f.as_fd()).unwrap();
        assert!(got <= index, "pty {index} is taken already (got {got})");
        if got == index {
            return f;
        }
        lower.push(f);
    }
}

#[test]
fn a_pty_index_taken_here_fails_the_restore_and_leaves_nothing() {
    let kit = Kit::new();
    let (result, hb) = args(&kit);
    let mut prog = kit.start(
        "ptys",
        &[result.to_str().unwrap(), hb.to_str().unwrap(), "tree"],
    );
    let n = prog.ready_numbers();
    let (pids, b_index) = (vec![n[0], n[1], n[2]], n[4] as u32);
    let tree = kit::proc::tree(prog.pid);
    let img = kit.path("img");
    ok(&kit.dump(prog.pid, &img, &[]));
    let _ = prog.child.wait();
    let left = reap(&tree, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "still there after the dump: {left:?}");
    let restore = || kit.crit(&["restore", "-d", "--shell-job", "-D", img.to_str().unwrap()]);

    let held = take_index(b_index);
    let o = restore();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains(&format!("pty index {b_index} is taken")),
        "names the index: {e}"
    );
    let left = reap(&pids, std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "left behind: {left:?} ({e})");
    drop(held);

    ok(&restore());
    let answers = kit::proc::ask_tree(pids[0], &result, 3);
    assert_eq!(count_ok(&answers), 3, "{answers}");
}

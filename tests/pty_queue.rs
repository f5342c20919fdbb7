//! Bytes queued in pty pairs (tests/programs/ptyqueue.c): read out into
//! tty-data.img as CRIU 4.2 writes it, queued again by the restore, and
//! queued again in the running tree by a dump with --leave-running. The
//! task checks each end's bytes itself: exactly as before the dump, in
//! order, with no second echo and no output processed twice; a canonical
//! slave's lines are left in place (-R) and not dumped.

mod kit;

use crit::image::pb;
use kit::dump::*;
use std::path::Path;

/// tty-data.img's entries: (tty-info id, bytes), and the pty indexes of
/// the four pairs in the order the program made them (A, B, C, D).
fn queued(img: &Path) -> (Vec<(u32, Vec<u8>)>, Vec<u32>) {
    let data: Vec<pb::TtyDataEntry> =
        crit::image::typed::read_all(&img.join("tty-data.img"), "TTY_DATA").unwrap();
    let infos: Vec<pb::TtyInfoEntry> =
        crit::image::typed::read_all(&img.join("tty-info.img"), "TTY_INFO").unwrap();
    let mut indexes: Vec<u32> = infos
        .iter()
        .filter(|i| i.id & 1 == 1)
        .filter_map(|i| i.pty.as_ref().map(|p| p.index))
        .collect();
    indexes.sort();
    let mut v: Vec<(u32, Vec<u8>)> = data.into_iter().map(|d| (d.tty_id, d.data)).collect();
    v.sort();
    (v, indexes)
}

/// What the images must hold: each end's bytes by its tty-info id (2N
/// for a slave, 2N+1 for a master); pair A's canonical slave none.
fn want(ix: &[u32]) -> Vec<(u32, Vec<u8>)> {
    let (a, b, c, d) = (ix[0], ix[1], ix[2], ix[3]);
    let pattern: Vec<u8> = (0..10000u32).map(|i| (i * 7 + (i >> 8)) as u8).collect();
    let mut w = vec![
        (2 * a + 1, b"out one\r\n".to_vec()),
        (2 * b, vec![1, 2, b'r', b'a', b'w', 0xff]),
        // CRIU's way: the packet status byte of the dump's read first.
        (2 * b + 1, vec![0, b'b', b'i', b'n', 0, 0xfe]),
        (2 * c, b"raw\ninput".to_vec()),
        (2 * d + 1, pattern),
    ];
    w.sort();
    w
}

#[test]
fn bytes_queued_in_pty_pairs_come_back_after_a_restore() {
    let kit = Kit::new();
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let answers = kit.round_trip(
        "ptyqueue",
        &[result.to_str().unwrap(), hb.to_str().unwrap(), "restored"],
        &result,
        1,
        |img| {
            let (got, ix) = queued(img);
            assert_eq!(got, want(&ix));
        },
    );
    assert!(answers.starts_with("OK"), "{answers}");
}

#[test]
fn a_dump_that_leaves_the_tree_running_queues_the_bytes_again() {
    let kit = Kit::new();
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let prog = kit.start(
        "ptyqueue",
        &[result.to_str().unwrap(), hb.to_str().unwrap(), "kept"],
    );
    let img = kit.path("img");
    let out = kit.dump(prog.pid, &img, &["-R"]);
    ok(&out);
    let (got, ix) = queued(&img);
    assert_eq!(got, want(&ix));
    // The canonical slave's line, left in place, is named.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pty {}: 6 byte(s) queued for its slave", ix[0])),
        "{stderr}"
    );
    assert_eq!(stderr.matches("pty").count(), 1, "{stderr}");
    let answers = kit::proc::ask_tree(prog.pid, &result, 1);
    assert!(answers.starts_with("OK"), "{answers}");
}

/// A pty full of output nobody reads, its writer blocked (tmux running
/// `yes`): a dump with -R reads it out and queues it again without
/// waiting for room that never comes, leaves the slave's settings as they
/// were, and the bytes come back whole and in order.
#[test]
fn a_full_pty_neither_hangs_a_dump_nor_loses_its_bytes() {
    let kit = Kit::new();
    let (result, hb) = (kit.path("result"), kit.path("hb"));
    let prog = kit.start(
        "ptyflood",
        &[result.to_str().unwrap(), hb.to_str().unwrap()],
    );
    for round in 0..3 {
        let img = kit.path(&format!("img{round}"));
        let mut c = kit::crit()
            .args(["dump", "-R", "-t", &prog.pid.to_string(), "-D"])
            .arg(&img)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while c.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                kill_tree(prog.pid);
                panic!("the dump hangs");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let o = c.wait_with_output().unwrap();
        ok(&o);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!e.contains("did not fit"), "{e}");
        let (got, _) = queued(&img);
        assert!(
            got.iter().any(|(id, d)| id & 1 == 1 && d.len() >= 4000),
            "{got:?}"
        );
    }
    let answers = kit::proc::ask_tree(prog.pid, &result, 2);
    assert_eq!(
        answers.lines().filter(|l| l.starts_with("OK")).count(),
        2,
        "{answers}"
    );
}

//! Bytes queued in pty pairs (tests/programs/ptyqueue.c): read out into
//! tty-data.img as CRIU 4.2 writes it, queued again by the restore, and
//! queued again in the running tree by a dump with --leave-running. The
//! task checks each end's bytes itself: exactly as before the dump, with
//! no second echo and no output processed twice.

mod kit;

use crit::image::pb;
use kit::dump::*;
use std::path::Path;

/// tty-data.img's entries: (tty-info id, bytes), and the pty index of
/// each of the two pairs (A: the one without packet mode).
fn queued(img: &Path) -> (Vec<(u32, Vec<u8>)>, u32, u32) {
    let data: Vec<pb::TtyDataEntry> =
        crit::image::typed::read_all(&img.join("tty-data.img"), "TTY_DATA").unwrap();
    let infos: Vec<pb::TtyInfoEntry> =
        crit::image::typed::read_all(&img.join("tty-info.img"), "TTY_INFO").unwrap();
    let index = |packet: bool| {
        infos
            .iter()
            .find(|i| i.id & 1 == 1 && i.packet_mode == packet)
            .and_then(|i| i.pty.as_ref())
            .unwrap()
            .index
    };
    let mut v: Vec<(u32, Vec<u8>)> = data.into_iter().map(|d| (d.tty_id, d.data)).collect();
    v.sort();
    (v, index(false), index(true))
}

/// What the images must hold: each end's bytes by its tty-info id
/// (2N for a slave, 2N+1 for a master).
fn want(a: u32, b: u32) -> Vec<(u32, Vec<u8>)> {
    let mut w = vec![
        (2 * a, b"first line\nsecond\n".to_vec()),
        (2 * a + 1, b"out one\r\n".to_vec()),
        (2 * b, vec![1, 2, b'r', b'a', b'w', 0xff]),
        // CRIU's way: the packet status byte of the dump's read first.
        (2 * b + 1, vec![0, b'b', b'i', b'n', 0, 0xfe]),
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
        &[result.to_str().unwrap(), hb.to_str().unwrap()],
        &result,
        1,
        |img| {
            let (got, a, b) = queued(img);
            assert_eq!(got, want(a, b));
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
        &[result.to_str().unwrap(), hb.to_str().unwrap()],
    );
    let img = kit.path("img");
    let out = kit.dump(prog.pid, &img, &["-R"]);
    ok(&out);
    let (got, a, b) = queued(&img);
    assert_eq!(got, want(a, b));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("pty"), "warned: {stderr}");
    let answers = kit::proc::ask_tree(prog.pid, &result, 1);
    assert!(answers.starts_with("OK"), "{answers}");
}

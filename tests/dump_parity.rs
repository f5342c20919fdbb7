//! Our images against CRIU 4.2's for the same kind of program: the same
//! set of images and, image by image, the same fields present (testdata/
//! criu-4.2 holds CRIU's dumps of similar programs).

mod kit;

use kit::dump::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn key_paths(v: &Value, at: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}.{k}");
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                key_paths(x, &format!("{at}[]"), out);
            }
        }
        _ => {}
    }
}

fn decode(kit: &Kit, p: &Path) -> Value {
    let o = kit.crit(&["decode", "-i", p.to_str().unwrap()]);
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Image name with pids and ids replaced by N.
fn kind(name: &str) -> String {
    let mut out = String::new();
    let mut digits = false;
    for c in name.chars() {
        if c.is_ascii_digit() {
            if !digits {
                out.push('N');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    out
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/criu-4.2")
        .join(name)
}

/// Same images (but `allow_extra`), and for each the same field paths,
/// except those listed in `skip` (paths that depend on what the program
/// held, not on the dumper).
fn compare(kit: &Kit, ours: &Path, theirs: &Path, allow_extra: &[&str], skip: &[&str]) {
    let list = |d: &Path| -> BTreeSet<String> {
        images(d)
            .into_iter()
            .filter(|n| (n.ends_with(".img") || n == "stats-dump") && !n.starts_with("pages-"))
            .map(|n| kind(&n))
            .collect()
    };
    let (a, b) = (list(ours), list(theirs));
    let missing: Vec<_> = b.difference(&a).collect();
    let extra: Vec<_> = a
        .difference(&b)
        .filter(|n| !allow_extra.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    // Images of one kind (core-PID.img of every thread, ...) are
    // compared as one: the union of their field paths.
    let is_img =
        |n: &String| (n.ends_with(".img") || n == "stats-dump") && !n.starts_with("pages-");
    for k in a.intersection(&b) {
        let paths = |d: &Path| -> BTreeSet<String> {
            let mut out = BTreeSet::new();
            for n in images(d)
                .into_iter()
                .filter(is_img)
                .filter(|n| &kind(n) == k)
            {
                key_paths(&decode(kit, &d.join(&n)), "", &mut out);
            }
            out.into_iter()
                .filter(|s| !skip.iter().any(|k| s.starts_with(k)))
                .collect()
        };
        let (mut pa, mut pb) = (paths(ours), paths(theirs));
        // Which xsave components a core holds depends on the CPU (CET,
        // AVX-512, PKRU...): ours must hold what this CPU has, whatever
        // the fixtures' CPU had.
        let xsave = ".entries[].thread_info.fpregs.xsave";
        let ours_x: BTreeSet<String> = pa
            .iter()
            .filter(|p| p.starts_with(xsave))
            .cloned()
            .collect();
        if !ours_x.is_empty() || pb.iter().any(|p| p.starts_with(xsave)) {
            assert_eq!(
                ours_x,
                kit::machine::expected_xsave_paths(xsave),
                "{k}: xsave fields against this CPU's components"
            );
        }
        pa.retain(|p| !p.starts_with(xsave));
        pb.retain(|p| !p.starts_with(xsave));
        let only_ours: Vec<_> = pa.difference(&pb).collect();
        let only_theirs: Vec<_> = pb.difference(&pa).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{k}: fields only in ours {only_ours:?}, only in CRIU's {only_theirs:?}"
        );
    }
}

#[test]
fn counter_like_task_matches_criu_field_for_field() {
    let kit = Kit::new();
    let prog = kit.start("counter", &[kit.path("r.txt").to_str().unwrap()]);
    let dir = kit.path("img");
    ok(&kit.dump(prog.pid, &dir, &[]));
    roundtrip_all(&kit, &dir);
    // Our counter also holds a pipe with data.
    compare(&kit, &dir, &fixture("counter"), &["pipes-data.img"], &[]);
}

#[test]
fn unix_sockets_match_criu_field_for_field() {
    let kit = Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let prog = kit.start("usk", &[sdir.to_str().unwrap()]);
    let dir = kit.path("img");
    ok(&kit.dump(prog.pid, &dir, &[]));
    // The usk program holds the sockets of usk_server plus deleted and
    // relative names (usk_deleted) and shut seqpacket (usk_pair), and the
    // counter program's pipe.
    compare(
        &kit,
        &dir,
        &fixture("usk_server"),
        &["pipes-data.img"],
        &[
            ".entries[].usk.deleted",
            ".entries[].usk.name_dir",
            ".entries[].usk.shutdown",
        ],
    );
}

#[test]
fn external_peer_matches_criu_field_for_field() {
    let kit = Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let prog = kit.start("usk_ext", &[sdir.to_str().unwrap(), "dgram"]);
    let child: i32 = prog
        .ready
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let dir = kit.path("img");
    ok(&kit.dump(child, &dir, &["--ext-unix-sk"]));
    compare(
        &kit,
        &dir,
        &fixture("usk_ext_dgram"),
        &["pipes-data.img", "sk-queues.img"],
        &[],
    );
    kill_tree(prog.pid);
}

#[test]
fn unix_socketpair_between_two_tasks_matches_criu() {
    let kit = Kit::new();
    let prog = kit.start("usk_tree", &[]);
    let w: Vec<i32> = prog.ready_numbers();
    let dir = kit.path("img");
    ok(&kit.dump(w[0], &dir, &[]));
    roundtrip_all(&kit, &dir);
    compare(&kit, &dir, &fixture("usk_tree"), &[], &[]);
    // Each end's peer is the other, across the two tasks' fd tables.
    let files = files(&dir);
    let usk: Vec<_> = files.iter().filter_map(|f| f.usk.clone()).collect();
    assert_eq!(usk.len(), 2);
    assert_eq!(usk[0].peer, usk[1].ino);
    assert_eq!(usk[1].peer, usk[0].ino);
}

#[test]
fn kitchen_like_tree_matches_criu() {
    let kit = Kit::new();
    let sdir = kit.path("s");
    std::fs::create_dir_all(&sdir).unwrap();
    let port = free_ports(3);
    let prog = kit.start(
        "files",
        &[sdir.to_str().unwrap(), &port.to_string(), "kitchen"],
    );
    let dir = kit.path("img");
    ok(&kit.dump(prog.pid, &dir, &[]));
    roundtrip_all(&kit, &dir);
    // What differs is what the programs hold, not how it is written: the
    // fixture's netlink socket is bound, its fifo was opened elsewhere.
    // (v6only: our program also holds an IPv6 listener, the fixture none.)
    compare(
        &kit,
        &dir,
        &fixture("kitchen"),
        &[],
        &[".entries[].isk.v6only"],
    );
    // Beyond the fixture: a connected UDP socket and an IPv6 listener.
    let fdinfo: Vec<crit::image::pb::FdinfoEntry> = all(&dir, "fdinfo-2.img", "FDINFO");
    let files = files(&dir);
    let isk = |fd: u32| {
        let id = fdinfo.iter().find(|f| f.fd == fd).unwrap().id;
        files
            .iter()
            .find(|f| f.id == id)
            .unwrap()
            .isk
            .clone()
            .unwrap()
    };
    let u = isk(18);
    assert_eq!((u.proto, u.state, u.dst_port), (17, 1, port as u32 + 1));
    if fdinfo.iter().any(|f| f.fd == 19) {
        let t6 = isk(19);
        assert_eq!(
            (t6.family, t6.state, t6.src_port),
            (10, 10, port as u32 + 2)
        );
        assert_eq!(t6.src_addr, vec![0, 0, 0, 1u32.to_be()]);
        assert!(t6.v6only.is_some());
    }
}

//! `crit edit`: --reconnect and --external on copies of the CRIU 4.2
//! fixtures (testdata/criu-4.2), checked with `crit decode` and byte by
//! byte against the original files.img.

mod kit;
use crit::image::entry::EntryReader;
use crit::image::source::Source;
use serde_json::{json, Value};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

use kit::crit_out as crit;
use kit::{copy_fixture, fixture};

fn edit(dir: &Path, args: &[&str]) -> Output {
    let mut v = vec!["edit", dir.to_str().unwrap()];
    v.extend_from_slice(args);
    crit(&v)
}

/// Stdout of a successful run.
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// The one stderr line of a refused run (exit 1, nothing on stdout).
fn refused(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        o.stdout.is_empty(),
        "stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    err.trim_end().to_string()
}

/// files.img as `crit decode` prints it (compact values).
fn files_json(dir: &Path) -> Value {
    let img = dir.join("files.img");
    let o = crit(&["decode", "-i", img.to_str().unwrap()]);
    serde_json::from_str(&ok(&o)).unwrap()
}

fn entries(v: &Value) -> &Vec<Value> {
    v["entries"].as_array().unwrap()
}

/// Index of the file entry of unix socket `ino`.
fn at_ino(v: &Value, ino: u64) -> usize {
    entries(v)
        .iter()
        .position(|e| e["usk"]["ino"] == json!(ino))
        .unwrap_or_else(|| panic!("no unix socket {ino}"))
}

fn usk(v: &Value, ino: u64) -> &Value {
    &entries(v)[at_ino(v, ino)]["usk"]
}

/// The header and the framed entries of files.img.
fn frames(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let mut src = Source::from_slice("files.img", bytes);
    let mut rd = EntryReader::expect(&mut src, "FILES").unwrap();
    let header = bytes[..rd.pos() as usize].to_vec();
    let mut v = Vec::new();
    while let Some(e) = rd.next_entry().unwrap() {
        let at = e.offset as usize;
        v.push(bytes[at..at + 4 + e.message.len()].to_vec());
    }
    (header, v)
}

/// (inode, peer) of a framed entry that is a unix socket.
fn frame_usk(frame: &[u8]) -> Option<(u32, u32)> {
    use prost::Message;
    crit::image::pb::FileEntry::decode(&frame[4..])
        .unwrap()
        .usk
        .map(|u| (u.ino, u.peer))
}

/// Indices (in the old file) of the entries that differ, asserting that the
/// header is unchanged and that the new file is the old entries, in their
/// order, plus one new entry for each inode in `added`: each right before
/// the first entry whose peer it is (CRIU's restore resolves a peer only
/// among the entries before it), or, if no entry has it as peer, after all
/// the old entries.
fn changed_frames(old: &[u8], new: &[u8], added: &[u32]) -> Vec<usize> {
    let (h0, f0) = frames(old);
    let (h1, f1) = frames(new);
    assert_eq!(h0, h1);
    assert_eq!(f1.len(), f0.len() + added.len());
    let usk1: Vec<_> = f1.iter().map(|f| frame_usk(f)).collect();
    let mut is_added = vec![false; f1.len()];
    for &a in added {
        assert!(
            !f0.iter().any(|f| frame_usk(f).map(|u| u.0) == Some(a)),
            "{a} was already in the old file"
        );
        let at: Vec<usize> = (0..f1.len())
            .filter(|&k| usk1[k].map(|u| u.0) == Some(a))
            .collect();
        assert_eq!(at.len(), 1, "entries of added socket {a}: {at:?}");
        is_added[at[0]] = true;
    }
    for &a in added {
        let at = (0..f1.len())
            .find(|&k| usk1[k].map(|u| u.0) == Some(a))
            .unwrap();
        match (0..f1.len()).find(|&k| usk1[k].map(|u| u.1) == Some(a)) {
            Some(k) => assert_eq!(
                k,
                at + 1,
                "added entry {a} is at {at}, the first socket with it as peer at {k}"
            ),
            None => assert!(
                is_added[at..].iter().all(|&x| x),
                "added entry {a} at {at} has no socket pointing to it but is not at the end"
            ),
        }
    }
    let kept: Vec<&Vec<u8>> = (0..f1.len())
        .filter(|&k| !is_added[k])
        .map(|k| &f1[k])
        .collect();
    assert_eq!(kept.len(), f0.len());
    (0..f0.len()).filter(|&i| f0[i] != *kept[i]).collect()
}

/// Bytes, inode and mtime of every file in `dir`.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, u64, i64, i64)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let m = std::fs::metadata(&p).unwrap();
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            (
                name,
                std::fs::read(&p).unwrap(),
                m.ino(),
                m.mtime(),
                m.mtime_nsec(),
            )
        })
        .collect();
    v.sort();
    v
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Re-encodes files.img from edited JSON, to build a case the fixtures lack.
fn write_files_json(dir: &Path, v: &Value) {
    let j = dir.join("files.json");
    std::fs::write(&j, serde_json::to_vec(v).unwrap()).unwrap();
    let img = dir.join("files.img");
    ok(&crit(&[
        "encode",
        "-i",
        j.to_str().unwrap(),
        "-o",
        img.to_str().unwrap(),
    ]));
    std::fs::remove_file(&j).unwrap();
}

#[test]
fn prost_reencodes_every_fixture_entry_byte_identically() {
    use prost::Message;
    let (mut n, mut unix) = (0, 0);
    for name in [
        "counter",
        "kitchen",
        "usk_deleted",
        "usk_ext_dgram",
        "usk_inherit",
        "usk_pair",
        "usk_server",
        "usk_tree",
    ] {
        let f = crit::edit::files_img::FilesImg::open(&fixture(name).join("files.img")).unwrap();
        f.for_each(|at, fe| {
            let raw = f.message(&at);
            assert_eq!(fe.encode_to_vec(), raw, "{name}: entry at {}", at.offset);
            if let Some(u) = &fe.usk {
                assert_eq!(
                    u.encode_to_vec(),
                    prost_field(raw, 16),
                    "{name}: usk at {}",
                    at.offset
                );
                unix += 1;
            }
            n += 1;
            Ok(())
        })
        .unwrap();
        // Nothing changed: the file is rebuilt to the same bytes.
        let mut same = Vec::new();
        f.write(&mut same, &[], &[]).unwrap();
        assert_eq!(
            same,
            std::fs::read(fixture(name).join("files.img")).unwrap(),
            "{name}"
        );
    }
    assert_eq!((n, unix), (114, 25));
}

/// The payload of length-delimited field `number` in a message.
fn prost_field(msg: &[u8], number: u32) -> Vec<u8> {
    for f in crit::image::wire::Fields::new(msg) {
        let f = f.unwrap();
        if f.number == number {
            return f.data.to_vec();
        }
    }
    panic!("no field {number}");
}

#[test]
fn reconnect_by_in_tree_inode_renames_its_external_entry() {
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let old = files_json(d);
    let out = ok(&edit(
        d,
        &["--reconnect", "306782=/tmp/scen/sock/other.sock"],
    ));
    let l = lines(&out);
    assert_eq!(l.len(), 6, "{out}");
    assert_eq!(l[0], "--reconnect 306782=/tmp/scen/sock/other.sock");
    assert_eq!(
        l[1],
        "  changed external entry 307648 (file id 11), the peer of 306782: name /tmp/scen/sock/extdg.sock -> /tmp/scen/sock/other.sock"
    );
    assert!(l[2].starts_with("    before: {\"type\": \"UNIXSK\", \"id\": 11, \"usk\": {\"id\": 11, \"ino\": 307648, \"type\": \"DGRAM\", \"state\": \"LISTEN\", \"flags\": \"0x0\", \"uflags\": \"0x1\""), "{}", l[2]);
    assert!(
        l[2].ends_with("\"name\": \"/tmp/scen/sock/extdg.sock=00\"}}"),
        "{}",
        l[2]
    );
    assert!(
        l[3].starts_with(
            "    after:  {\"type\": \"UNIXSK\", \"id\": 11, \"usk\": {\"id\": 11, \"ino\": 307648,"
        ),
        "{}",
        l[3]
    );
    assert!(
        l[3].ends_with("\"name\": \"/tmp/scen/sock/other.sock=00\"}}"),
        "{}",
        l[3]
    );
    assert_eq!(
        l[4],
        "  note: a restore connects 306782 to /tmp/scen/sock/other.sock: a dgram socket must be bound there, and criu restore needs --ext-unix-sk"
    );
    assert_eq!(l[5], "files.img: 1 entry changed, 0 added; written");

    let new = files_json(d);
    let mut want = old.clone();
    let i = at_ino(&old, 307648);
    want["entries"][i]["usk"]["name"] = json!("/tmp/scen/sock/other.sock=00");
    assert_eq!(new, want);
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    assert_eq!(changed_frames(&old_bytes, &new_bytes, &[]), vec![i]);
    assert_eq!(new_bytes.len(), old_bytes.len());
}

#[test]
fn reconnect_by_external_inode_with_abstract_name() {
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let old = files_json(d);
    let out = ok(&edit(d, &["--reconnect", "307648=@crit-test"]));
    assert_eq!(
        lines(&out)[1],
        "  changed external entry 307648 (file id 11), the peer of 306782: name /tmp/scen/sock/extdg.sock -> @crit-test"
    );
    let new = files_json(d);
    let i = at_ino(&old, 307648);
    let mut want = old.clone();
    want["entries"][i]["usk"]["name"] = json!("=00crit-test");
    assert_eq!(new, want);
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    assert_eq!(changed_frames(&old_bytes, &new_bytes, &[]), vec![i]);
    // "\0crit-test" (10 bytes) replaced "/tmp/scen/sock/extdg.sock\0" (26).
    assert_eq!(old_bytes.len() - new_bytes.len(), 16);
}

/// usk_ext_dgram plus a second in-tree socket 306790 (file id 12) that
/// shares external entry 307648 with 306782.
fn shared_external() -> tempfile::TempDir {
    let t = copy_fixture("usk_ext_dgram");
    let mut v = files_json(t.path());
    let mut twin = entries(&v)[at_ino(&v, 306782)].clone();
    twin["id"] = json!(12);
    twin["usk"]["id"] = json!(12);
    twin["usk"]["ino"] = json!(306790);
    v["entries"].as_array_mut().unwrap().push(twin);
    write_files_json(t.path(), &v);
    let v = files_json(t.path());
    assert_eq!(usk(&v, 306790)["peer"], json!(307648));
    assert_eq!(usk(&v, 306782)["peer"], json!(307648));
    t
}

#[test]
fn reconnect_one_of_two_sockets_sharing_an_external_entry() {
    let t = shared_external();
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let old = files_json(d);
    let out = ok(&edit(d, &["--reconnect", "306782=/tmp/b.sock"]));
    let l = lines(&out);
    assert_eq!(
        l[1],
        "  added external entry 307649 (file id 13) for 306782 alone (307648 stays the peer of 306790): name /tmp/b.sock"
    );
    assert_eq!(l[2], "    before: none");
    assert_eq!(
        l[4],
        "  changed unix socket 306782 (file id 6): peer 307648 -> 307649"
    );
    assert_eq!(
        *l.last().unwrap(),
        "files.img: 1 entry changed, 1 added; written"
    );

    let new = files_json(d);
    let i = at_ino(&old, 306782);
    let mut want = old.clone();
    want["entries"][i]["usk"]["peer"] = json!(307649);
    let mut ext = entries(&old)[at_ino(&old, 307648)].clone();
    ext["id"] = json!(13);
    ext["usk"]["id"] = json!(13);
    ext["usk"]["ino"] = json!(307649);
    ext["usk"]["name"] = json!("/tmp/b.sock=00");
    // The new entry goes right before 306782, the socket whose peer it is.
    want["entries"].as_array_mut().unwrap().insert(i, ext);
    assert_eq!(new, want);
    assert_eq!((at_ino(&new, 307649), at_ino(&new, 306782)), (i, i + 1));
    // The new entry, spelled out.
    let e = &entries(&new)[i];
    assert_eq!(e["type"], json!("UNIXSK"));
    assert_eq!(
        (
            &e["usk"]["type"],
            &e["usk"]["state"],
            &e["usk"]["uflags"],
            &e["usk"]["peer"]
        ),
        (&json!(2), &json!(10), &json!(1), &json!(0))
    );
    assert_eq!(usk(&new, 306790)["peer"], json!(307648));
    assert_eq!(
        usk(&new, 307648)["name"],
        json!("/tmp/scen/sock/extdg.sock=00")
    );
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    assert_eq!(changed_frames(&old_bytes, &new_bytes, &[307649]), vec![i]);
}

#[test]
fn reconnect_shared_external_entry_moves_every_socket() {
    let t = shared_external();
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let out = ok(&edit(d, &["--reconnect", "307648=/tmp/c.sock"]));
    let l = lines(&out);
    assert_eq!(
        l[1],
        "  changed external entry 307648 (file id 11), the peer of 306782, 306790: name /tmp/scen/sock/extdg.sock -> /tmp/c.sock"
    );
    assert_eq!(
        l[4],
        "  note: a restore connects 306782, 306790 to /tmp/c.sock: a dgram socket must be bound there, and criu restore needs --ext-unix-sk"
    );
    let new = files_json(d);
    assert_eq!(usk(&new, 307648)["name"], json!("/tmp/c.sock=00"));
    assert_eq!(usk(&new, 306782)["peer"], json!(307648));
    assert_eq!(usk(&new, 306790)["peer"], json!(307648));
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    assert_eq!(
        changed_frames(&old_bytes, &new_bytes, &[]),
        vec![at_ino(&new, 307648)]
    );
}

#[test]
fn external_on_stream_pair_without_address() {
    let t = copy_fixture("usk_pair");
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let old = files_json(d);
    let out = ok(&edit(d, &["--external", "306124"]));
    let l = lines(&out);
    assert_eq!(l[0], "--external 306124");
    assert_eq!(
        l[1],
        "  added external entry 306129 (file id 16), the outside end for 306124: STREAM, name -"
    );
    assert_eq!(
        l[4],
        "  changed unix socket 306124 (file id 7): peer 306123 -> 306129"
    );
    assert_eq!(
        l[7],
        "  changed unix socket 306123 (file id 6), the old peer: peer 306124 -> 0, shutdown NONE -> BOTH"
    );
    assert_eq!(l[10], "  note: the new external end has no address: a restore needs --inherit-fd fd[N]:socket:[306124]");
    assert_eq!(
        l[11],
        "  note: 306123 comes back as a connection whose other end has closed: it reads its queue (1 packet(s), 13 bytes), then EOF"
    );
    assert_eq!(
        l[12],
        "  note: 306124's own queue (1 packet(s), 13 bytes) is not refilled by a restore: CRIU refills a stream socket's queue only through a peer in the images"
    );
    assert_eq!(l[13], "files.img: 2 entries changed, 1 added; written");
    assert_eq!(l.len(), 14);

    let new = files_json(d);
    let (a, b) = (at_ino(&old, 306124), at_ino(&old, 306123));
    // The new entry goes right before 306124, the socket whose peer it is.
    assert_eq!((at_ino(&new, 306129), at_ino(&new, 306124)), (a, a + 1));
    let added = &entries(&new)[a];
    assert_eq!(
        *added,
        json!({"type": "UNIXSK", "id": 16, "usk": {
            "id": 16, "ino": 306129, "type": 1, "state": 10, "flags": 0, "uflags": 1, "backlog": 0, "peer": 0,
            "fown": {"uid": 0, "euid": 0, "signum": 0, "pid_type": 0, "pid": 0},
            "opts": {"so_sndbuf": 0, "so_rcvbuf": 0, "so_snd_tmo_sec": 0, "so_snd_tmo_usec": 0, "so_rcv_tmo_sec": 0, "so_rcv_tmo_usec": 0},
            "name": ""}})
    );
    let mut want = old.clone();
    want["entries"][a]["usk"]["peer"] = json!(306129);
    want["entries"][b]["usk"]["peer"] = json!(0);
    // shutdown (field 12) goes before file_perms/ns_id, in field order.
    let u = want["entries"][b]["usk"].as_object_mut().unwrap();
    let ns = u.remove("ns_id").unwrap();
    u.insert("shutdown".into(), json!("BOTH"));
    u.insert("ns_id".into(), ns);
    want["entries"]
        .as_array_mut()
        .unwrap()
        .insert(a, added.clone());
    assert_eq!(new, want);
    assert_eq!(usk(&new, 306123)["state"], json!(1));
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    let mut both = vec![a, b];
    both.sort();
    assert_eq!(changed_frames(&old_bytes, &new_bytes, &[306129]), both);
}

#[test]
fn external_on_dgram_pair_leaves_old_peer_unconnected() {
    let t = copy_fixture("usk_pair");
    let d = t.path();
    let out = ok(&edit(d, &["--external", "306126"]));
    let l = lines(&out);
    assert_eq!(
        l[1],
        "  added external entry 306129 (file id 16), the outside end for 306126: DGRAM, name -"
    );
    assert_eq!(
        l[7],
        "  changed unix socket 306125 (file id 8), the old peer: peer 306126 -> 0"
    );
    assert_eq!(
        l[11],
        "  note: 306125 comes back unconnected, with its queue (empty)"
    );
    let new = files_json(d);
    let old_peer = usk(&new, 306125);
    assert_eq!(
        (&old_peer["peer"], &old_peer["state"]),
        (&json!(0), &json!(1))
    );
    assert_eq!(old_peer.get("shutdown"), None);
    assert_eq!(usk(&new, 306126)["peer"], json!(306129));
    assert_eq!(usk(&new, 306129)["type"], json!(2));
}

#[test]
fn external_on_tree_with_path() {
    let t = copy_fixture("usk_tree");
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let old = files_json(d);
    let out = ok(&edit(d, &["--external", "288643=/tmp/scen/sock/out.sock"]));
    let l = lines(&out);
    // Socket and pipe inodes share a counter: the new inode goes above the pipe's 305921.
    assert_eq!(
        l[1],
        "  added external entry 305922 (file id 14), the outside end for 288643: STREAM, name /tmp/scen/sock/out.sock"
    );
    assert_eq!(
        l[10],
        "  note: a restore connects 288643 to /tmp/scen/sock/out.sock: a socket must be listening there, and criu restore needs --ext-unix-sk"
    );
    let new = files_json(d);
    let ext = usk(&new, 305922);
    assert_eq!(ext["name"], json!("/tmp/scen/sock/out.sock=00"));
    assert_eq!(
        (
            &ext["id"],
            &ext["uflags"],
            &ext["peer"],
            &ext["type"],
            &ext["state"]
        ),
        (&json!(14), &json!(1), &json!(0), &json!(1), &json!(10))
    );
    assert_eq!(usk(&new, 288643)["peer"], json!(305922));
    let old_peer = usk(&new, 288642);
    assert_eq!(
        (&old_peer["peer"], &old_peer["shutdown"], &old_peer["state"]),
        (&json!(0), &json!("BOTH"), &json!(1))
    );
    // The new entry goes right before 288643, the socket whose peer it is.
    let a = at_ino(&old, 288643);
    assert_eq!((at_ino(&new, 305922), at_ino(&new, 288643)), (a, a + 1));
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    let mut both = vec![a, at_ino(&old, 288642)];
    both.sort();
    assert_eq!(changed_frames(&old_bytes, &new_bytes, &[305922]), both);
}

#[test]
fn several_actions_apply_together() {
    let t = copy_fixture("usk_server");
    let d = t.path();
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let old = files_json(d);
    let out = ok(&edit(
        d,
        &[
            "--external",
            "306395",
            "--external",
            "306397",
            "--external",
            "306399=@other",
        ],
    ));
    assert_eq!(
        out.lines().last().unwrap(),
        "files.img: 5 entries changed, 3 added; written"
    );
    assert!(out.contains("\n  added external entry 306403 (file id 19), the outside end for 306395: STREAM, name /tmp/scen/sock/srv.sock (from 306396)\n"));
    assert!(out.contains("\n  note: unix socket 306394 (file id 6, STREAM LISTEN, name /tmp/scen/sock/srv.sock) does not have 306397 as peer and stays as it is\n"));
    let new = files_json(d);
    // An accepted connection: the address is the listener's, as recorded on the accepted end.
    assert_eq!(
        usk(&new, 306403)["name"],
        json!("/tmp/scen/sock/srv.sock=00")
    );
    assert_eq!(usk(&new, 306395)["peer"], json!(306403));
    assert_eq!(
        (&usk(&new, 306396)["peer"], &usk(&new, 306396)["shutdown"]),
        (&json!(0), &json!("BOTH"))
    );
    // A pending connection: the listener's name; the listener is left alone.
    assert_eq!(
        usk(&new, 306404)["name"],
        json!("/tmp/scen/sock/srv.sock=00")
    );
    assert_eq!(usk(&new, 306397)["peer"], json!(306404));
    assert_eq!(usk(&new, 306394)["peer"], json!(0));
    // An explicit abstract name, on a seqpacket socket.
    assert_eq!(usk(&new, 306405)["name"], json!("=00other"));
    assert_eq!(usk(&new, 306405)["type"], json!(5));
    assert_eq!(usk(&new, 306399)["peer"], json!(306405));
    assert_eq!(
        (&usk(&new, 306400)["peer"], &usk(&new, 306400)["shutdown"]),
        (&json!(0), &json!("BOTH"))
    );
    // Each new entry goes right before the socket whose peer it is.
    for (ext, sk) in [(306403, 306395), (306404, 306397), (306405, 306399)] {
        assert_eq!(at_ino(&new, ext) + 1, at_ino(&new, sk), "{ext} before {sk}");
    }
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    let mut want: Vec<usize> = [306395, 306396, 306397, 306399, 306400]
        .iter()
        .map(|&i| at_ino(&old, i))
        .collect();
    want.sort();
    // The listener's entry (306394) is not among them.
    assert_eq!(
        changed_frames(&old_bytes, &new_bytes, &[306403, 306404, 306405]),
        want
    );
}

#[test]
fn dry_run_prints_the_same_and_writes_nothing() {
    let t = copy_fixture("usk_pair");
    let d = t.path();
    let before = snapshot(d);
    let dry = ok(&edit(d, &["--external", "306124", "--dry-run"]));
    assert_eq!(snapshot(d), before);
    let t2 = copy_fixture("usk_pair");
    let real = ok(&edit(t2.path(), &["--external", "306124"]));
    let (dl, rl) = (lines(&dry), lines(&real));
    assert_eq!(dl.len(), rl.len());
    assert_eq!(dl[..dl.len() - 1], rl[..rl.len() - 1]);
    assert_eq!(
        *dl.last().unwrap(),
        "files.img: 2 entries changed, 1 added; dry run, nothing written"
    );
    assert_ne!(snapshot(t2.path()), before);
}

#[test]
fn one_bad_action_writes_nothing() {
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    let before = snapshot(d);
    let e = refused(&edit(
        d,
        &["--reconnect", "306782=/tmp/ok.sock", "--external", "99999"],
    ));
    assert_eq!(
        e,
        format!(
            "crit: {}/files.img: --external 99999: no unix socket with inode 99999; unix sockets in the images (inode name): 307648 /tmp/scen/sock/extdg.sock (external), 306782 -",
            d.display()
        )
    );
    assert_eq!(snapshot(d), before);

    // Both ends of a pair: the second finds its peer already gone.
    let t = copy_fixture("usk_pair");
    let d = t.path();
    let before = snapshot(d);
    let e = refused(&edit(d, &["--external", "306124", "--external", "306123"]));
    assert_eq!(
        e,
        format!(
            "crit: {}/files.img: --external 306123: unix socket 306123 (file id 6, STREAM ESTABLISHED, name -) is not connected (peer 0, after --external 306124)",
            d.display()
        )
    );
    assert_eq!(snapshot(d), before);
}

#[test]
fn refusals() {
    let t = copy_fixture("usk_server");
    let d = t.path();
    let f = format!("{}/files.img", d.display());
    let before = snapshot(d);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--external", "306394"],
            format!("crit: {f}: --external 306394: unix socket 306394 (file id 6, STREAM LISTEN, name /tmp/scen/sock/srv.sock) is not connected (peer 0)"),
        ),
        (
            vec!["--reconnect", "306395=/x"],
            format!("crit: {f}: --reconnect 306395=/x: unix socket 306395 (file id 7, STREAM ESTABLISHED, name -) is connected to 306396, which is in the images, not external; use --external 306395=PATH to connect it elsewhere"),
        ),
        (
            vec!["--reconnect", "306401=/x"],
            format!("crit: {f}: --reconnect 306401=/x: unix socket 306401 (file id 14, DGRAM ESTABLISHED, name /tmp/scen/sock/dgram.sock) is not connected (peer 0)"),
        ),
        (
            vec!["--external", "306395", "--reconnect", "306395=/x"],
            "crit: --reconnect 306395=/x: inode 306395 is already named by --external 306395; give one action per socket".into(),
        ),
        (vec!["--reconnect", "306395=rel/x"], "crit: --reconnect 306395=rel/x: PATH must be absolute (/...) or @name for an abstract address".into()),
        (vec!["--reconnect", "306395="], "crit: --reconnect 306395=: PATH is empty".into()),
        (vec!["--reconnect", "306395=@"], "crit: --reconnect 306395=@: the abstract name after @ is empty".into()),
        (vec!["--reconnect", "306395"], "crit: --reconnect 306395: expected INO=PATH".into()),
        (vec!["--external", "x1=/a"], "crit: --external x1=/a: INO must be a socket inode number (1 to 4294967295)".into()),
        (vec!["--external", "0"], "crit: --external 0: INO must be a socket inode number (1 to 4294967295)".into()),
        (vec!["--external", "4294967296"], "crit: --external 4294967296: INO must be a socket inode number (1 to 4294967295)".into()),
        (vec![], "crit: edit: no action given: use --reconnect INO=PATH or --external INO[=PATH]".into()),
    ];
    for (args, want) in cases {
        assert_eq!(refused(&edit(d, &args)), want, "{args:?}");
    }
    // Lengths: 107 bytes after the @ conversion fit, 108 do not.
    let long_path = format!("306395=/{}", "a".repeat(107));
    let long_abs = format!("306395=@{}", "a".repeat(107));
    for arg in [&long_path, &long_abs] {
        assert_eq!(
            refused(&edit(d, &["--external", arg])),
            format!("crit: --external {arg}: PATH is 108 bytes, more than the 107 a unix socket address can take")
        );
    }
    assert_eq!(snapshot(d), before);
    let fits = format!("306395=/{}", "a".repeat(106));
    ok(&edit(d, &["--external", &fits, "--dry-run"]));
    let fits = format!("306395=@{}", "a".repeat(106));
    ok(&edit(d, &["--external", &fits, "--dry-run"]));
    // A NUL cannot come through argv; the library refuses it.
    let e = crit::edit::parse_path("--reconnect 5=/a", b"/a\0b").unwrap_err();
    assert_eq!(e.to_string(), "--reconnect 5=/a: PATH contains a NUL byte");
    assert_eq!(crit::edit::parse_path("x", b"/a").unwrap().bytes, b"/a\0");
    assert_eq!(crit::edit::parse_path("x", b"@a").unwrap().bytes, b"\0a");
    assert_eq!(snapshot(d), before);
}

#[test]
fn refuses_an_incomplete_image_set() {
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    std::fs::remove_file(d.join("pstree.img")).unwrap();
    assert_eq!(
        refused(&edit(d, &["--reconnect", "306782=/x"])),
        format!(
            "crit: {}: not a complete image set: missing pstree.img",
            d.display()
        )
    );
    std::fs::remove_file(d.join("inventory.img")).unwrap();
    std::fs::remove_file(d.join("files.img")).unwrap();
    assert_eq!(
        refused(&edit(d, &["--reconnect", "306782=/x"])),
        format!(
            "crit: {}: not a complete image set: missing inventory.img, pstree.img, files.img",
            d.display()
        )
    );
    let gone = d.join("nothing");
    assert_eq!(
        refused(&edit(&gone, &["--reconnect", "306782=/x"])),
        format!("crit: {}: no such directory", gone.display())
    );
}

#[test]
fn refuses_an_entry_changed_by_two_actions() {
    let t = copy_fixture("usk_inherit");
    let d = t.path();
    let before = snapshot(d);
    assert_eq!(
        refused(&edit(d, &["--reconnect", "306949=/x", "--reconnect", "306950=/y"])),
        format!(
            "crit: {}/files.img: --reconnect 306950=/y: external entry 306949 (file id 8, DGRAM LISTEN, name -) is also changed by --reconnect 306949=/x; one entry can take one change per call",
            d.display()
        )
    );
    assert_eq!(snapshot(d), before);
}

#[test]
fn unknown_fields_are_kept_or_the_edit_refused() {
    // Field 21 (varint 5) on the in-tree socket: kept byte for byte.
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    let mut v = files_json(d);
    let i = at_ino(&v, 306782);
    v["entries"][i]["usk"]["__unknown_fields__"] = json!(["a80105"]);
    write_files_json(d, &v);
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    ok(&edit(d, &["--reconnect", "306782=/tmp/y.sock"]));
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    assert_eq!(
        changed_frames(&old_bytes, &new_bytes, &[]),
        vec![at_ino(&v, 307648)]
    );
    let new = files_json(d);
    assert_eq!(usk(&new, 306782)["__unknown_fields__"], json!(["a80105"]));
    assert_eq!(usk(&new, 307648)["name"], json!("/tmp/y.sock=00"));

    // The same field on the entry that must change: refused, nothing written.
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    let mut v = files_json(d);
    let i = at_ino(&v, 307648);
    v["entries"][i]["usk"]["__unknown_fields__"] = json!(["a80105"]);
    write_files_json(d, &v);
    let bytes = std::fs::read(d.join("files.img")).unwrap();
    let (_, fr) = frames(&bytes);
    let offset: usize = 8 + fr[..i].iter().map(Vec::len).sum::<usize>();
    let before = snapshot(d);
    assert_eq!(
        refused(&edit(d, &["--reconnect", "306782=/tmp/y.sock"])),
        format!(
            "crit: {}/files.img: the entry of unix socket 307648 (file id 11, at byte {offset}) does not re-encode to its own bytes (fields crit does not know?); refusing to rewrite it",
            d.display()
        )
    );
    assert_eq!(snapshot(d), before);
}

#[test]
fn file_mode_is_kept_and_no_temporary_file_is_left() {
    let t = copy_fixture("usk_ext_dgram");
    let d = t.path();
    let img = d.join("files.img");
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o640)).unwrap();
    let ino = std::fs::metadata(&img).unwrap().ino();
    ok(&edit(d, &["--reconnect", "306782=/tmp/z.sock"]));
    let m = std::fs::metadata(&img).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o640);
    // Replaced by rename, not written in place.
    assert_ne!(m.ino(), ino);
    let names: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert_eq!(names, Vec::<String>::new());
    assert_eq!(usk(&files_json(d), 307648)["name"], json!("/tmp/z.sock=00"));
}

/// usk_deleted has a listener whose file was unlinked (306491) and a dgram
/// socket bound to the relative name rel.sock in /tmp/scen/sock (306492).
/// To those, this adds, at the end of files.img, a pending stream socket
/// 306600 (file id 20) connected to the first and a dgram one 306601 (file
/// id 21) connected to the second.
fn clients_of_deleted() -> tempfile::TempDir {
    let t = copy_fixture("usk_deleted");
    let mut v = files_json(t.path());
    let base = entries(&v)[at_ino(&v, 306492)].clone();
    for (id, ino, ty, peer) in [(20, 306600, 1, 306491), (21, 306601, 2, 306492)] {
        let mut e = base.clone();
        e["id"] = json!(id);
        let u = e["usk"].as_object_mut().unwrap();
        for k in ["file_perms", "name_dir"] {
            u.remove(k);
        }
        u.insert("id".into(), json!(id));
        u.insert("ino".into(), json!(ino));
        u.insert("type".into(), json!(ty));
        u.insert("state".into(), json!(1));
        u.insert("peer".into(), json!(peer));
        u.insert("name".into(), json!(""));
        v["entries"].as_array_mut().unwrap().push(e);
    }
    write_files_json(t.path(), &v);
    t
}

#[test]
fn external_takes_a_relative_name_with_its_dir_and_notes_an_unlinked_one() {
    let t = clients_of_deleted();
    let d = t.path();
    let v = files_json(d);
    let old_bytes = std::fs::read(d.join("files.img")).unwrap();
    let out = ok(&edit(d, &["--external", "306600", "--external", "306601"]));
    assert!(
        out.contains("\n  note: 306491's address was already unlinked when the images were made\n"),
        "{out}"
    );
    let new = files_json(d);
    // Each new entry goes right before the socket whose peer it is; the two
    // sockets were the last two entries.
    let n = entries(&v).len();
    assert_eq!((at_ino(&v, 306600), at_ino(&v, 306601)), (n - 2, n - 1));
    assert_eq!(
        [306602, 306600, 306603, 306601].map(|i| at_ino(&new, i)),
        [n - 2, n - 1, n, n + 1]
    );
    let ext = usk(&new, 306602).clone();
    assert_eq!(
        (&ext["ino"], &ext["name"], ext.get("deleted")),
        (&json!(306602), &json!("/tmp/scen/sock/gone.sock=00"), None)
    );
    assert_eq!(usk(&new, 306600)["peer"], json!(306602));
    let ext = usk(&new, 306603).clone();
    assert_eq!(
        (&ext["ino"], &ext["type"], &ext["name"], &ext["name_dir"]),
        (
            &json!(306603),
            &json!(2),
            &json!("rel.sock=00"),
            &json!("/tmp/scen/sock")
        )
    );
    assert_eq!(usk(&new, 306601)["peer"], json!(306603));
    // Neither old peer pointed back, so neither changed.
    assert_eq!(usk(&new, 306491), usk(&v, 306491));
    assert_eq!(usk(&new, 306492), usk(&v, 306492));
    let new_bytes = std::fs::read(d.join("files.img")).unwrap();
    assert_eq!(
        changed_frames(&old_bytes, &new_bytes, &[306602, 306603]),
        vec![n - 2, n - 1]
    );
}

/// Where files.img breaks CRIU's restore order: (index of a unix socket,
/// index of its peer) for each socket whose peer is an external entry
/// (USK_EXTERN, uflags & 1) that does not come before it. Also returns the
/// inodes of the external entries that do come before their sockets.
fn externals_after_their_sockets(v: &Value) -> (Vec<(usize, usize)>, Vec<u64>) {
    let e = entries(v);
    let (mut bad, mut good) = (Vec::new(), Vec::new());
    for (k, s) in e.iter().enumerate() {
        let Some(p) = s["usk"]["peer"].as_u64().filter(|&p| p != 0) else {
            continue;
        };
        let Some(j) = e.iter().position(|x| x["usk"]["ino"] == json!(p)) else {
            continue;
        };
        if e[j]["usk"]["uflags"].as_u64().unwrap() & 1 == 0 {
            continue;
        }
        if j < k {
            good.push(p);
        } else {
            bad.push((k, j));
        }
    }
    (bad, good)
}

#[test]
fn added_external_entry_precedes_its_socket() {
    // Every edit in this file that adds an entry.
    let edits: Vec<(tempfile::TempDir, Vec<&str>)> = vec![
        (shared_external(), vec!["--reconnect", "306782=/tmp/b.sock"]),
        (copy_fixture("usk_pair"), vec!["--external", "306124"]),
        (copy_fixture("usk_pair"), vec!["--external", "306126"]),
        (
            copy_fixture("usk_pair"),
            vec!["--external", "306124=/run/peer.sock"],
        ),
        (
            copy_fixture("usk_tree"),
            vec!["--external", "288643=/tmp/scen/sock/out.sock"],
        ),
        (
            copy_fixture("usk_server"),
            vec![
                "--external",
                "306395",
                "--external",
                "306397",
                "--external",
                "306399=@other",
            ],
        ),
        (
            clients_of_deleted(),
            vec!["--external", "306600", "--external", "306601"],
        ),
    ];
    for (t, args) in &edits {
        let d = t.path();
        // CRIU's own dumps (and the cases built from them) keep the order.
        let (bad, _) = externals_after_their_sockets(&files_json(d));
        assert_eq!(bad, vec![], "{args:?}: before the edit");
        let out = ok(&edit(d, args));
        let added: Vec<u64> = out
            .lines()
            .filter_map(|l| l.strip_prefix("  added external entry "))
            .map(|l| l.split(' ').next().unwrap().parse().unwrap())
            .collect();
        assert!(
            out.lines()
                .last()
                .unwrap()
                .ends_with(&format!(" {} added; written", added.len())),
            "{args:?}: {out}"
        );
        assert!(!added.is_empty(), "{args:?}: {out}");
        let new = files_json(d);
        let (bad, good) = externals_after_their_sockets(&new);
        assert_eq!(bad, vec![], "{args:?}");
        // The rule is not vacuous: every added entry is some socket's peer.
        for a in &added {
            assert!(good.contains(a), "{args:?}: nothing points to {a}");
        }
        // And it catches the old layout, with the added entries at the end.
        let mut last = new.clone();
        let all = last["entries"].as_array_mut().unwrap();
        for a in &added {
            let i = all
                .iter()
                .position(|e| e["usk"]["ino"] == json!(a))
                .unwrap();
            let e = all.remove(i);
            all.push(e);
        }
        let (bad, _) = externals_after_their_sockets(&last);
        assert_eq!(bad.len(), added.len(), "{args:?}");
    }
}

/// Two edits of one images directory at once both take effect: the
/// second waits for the first (a lock on the directory) and reads what
/// it wrote.
#[test]
fn concurrent_edits_both_land() {
    let bin = env!("CARGO_BIN_EXE_crit");
    for _ in 0..10 {
        let t = shared_external();
        let d = t.path().to_str().unwrap().to_string();
        let spawn = |arg: &str| {
            std::process::Command::new(bin)
                .args(["edit", &d, "--reconnect", arg])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let a = spawn("306782=/tmp/a.sock");
        let b = spawn("306790=/tmp/b.sock");
        for c in [a, b] {
            let o = c.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        let v = files_json(t.path());
        let name_of_peer = |ino: u64| {
            let peer = usk(&v, ino)["peer"].as_u64().unwrap();
            usk(&v, peer)["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        // Names print in crit's quoted-printable form (=00: the NUL).
        assert!(
            name_of_peer(306782).starts_with("/tmp/a.sock"),
            "{}",
            name_of_peer(306782)
        );
        assert!(
            name_of_peer(306790).starts_with("/tmp/b.sock"),
            "{}",
            name_of_peer(306790)
        );
    }
}

/// An entry lacking a field the proto requires (an empty `ext` message
/// added to the first entry) is refused, as `crit decode` and CRIU's
/// loader refuse it, with the file's offset; nothing is written.
#[test]
fn an_entry_lacking_a_required_field_is_refused() {
    let t = copy_fixture("usk_pair");
    let d = t.path();
    let path = d.join("files.img");
    let mut img = std::fs::read(&path).unwrap();
    // Magic (8 bytes), then the first entry's length and message.
    let len = u32::from_le_bytes(img[8..12].try_into().unwrap());
    let end = 12 + len as usize;
    img.splice(end..end, [0x7a, 0x00]);
    img[8..12].copy_from_slice(&(len + 2).to_le_bytes());
    std::fs::write(&path, &img).unwrap();
    let before = snapshot(d);
    let err = refused(&edit(d, &["--external", "306124=@service"]));
    // The empty message starts after its tag and length.
    assert_eq!(
        err,
        format!(
            "crit: {}: at byte {}: ext_file_entry lacks required field id",
            path.display(),
            end + 2
        )
    );
    assert_eq!(snapshot(d), before, "an edit refused changes nothing");
}

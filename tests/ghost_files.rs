//! Deleted files a task holds open (tests/programs/ghosts.c): a sparse
//! one of 64 MiB with 104 KiB of data, a small one and a dense one of
//! 3 MiB. The dense one is over the default ghost limit (1 MiB of space
//! taken, as in CRIU): the dump refuses it in one line naming the
//! option and leaves the task running unharmed; with `--ghost-limit 4M`
//! all three come back deleted, with their bytes, the sparse one still
//! sparse, and its ghost image holds only its data, as CRIU's chunks,
//! even when their directory was removed too.

mod kit;

use crit::image::entry::EntryReader;
use crit::image::pb;
use crit::image::typed::Mapped;
use kit::dump::*;
use std::path::{Path, PathBuf};

/// The program's arguments: result file, heartbeat, and the directory
/// its files are made in (and unlinked from).
fn args(kit: &Kit) -> (PathBuf, PathBuf, PathBuf) {
    let files = kit.path("files");
    std::fs::create_dir_all(&files).unwrap();
    (kit.path("result"), kit.path("hb"), files)
}

/// A ghost image's head and its chunks as (offset, length, bytes held).
fn ghost(p: &Path) -> (pb::GhostFileEntry, Vec<(u64, u64, usize)>) {
    let img = Mapped::open(p).unwrap();
    let mut src = img.source();
    let mut rd = EntryReader::expect(&mut src, "GHOST_FILE").unwrap();
    let e = rd.next_entry().unwrap().unwrap();
    let head: pb::GhostFileEntry = e.decode().unwrap();
    let mut chunks = Vec::new();
    while let Some(e) = rd.next_entry().unwrap() {
        let c: pb::GhostChunkEntry = e.decode().unwrap();
        chunks.push((c.off, c.len, e.raw_payload.len()));
    }
    (head, chunks)
}

#[test]
fn deleted_files_come_back_whole_and_sparse() {
    let kit = Kit::new();
    let (result, hb, files) = args(&kit);
    let a = [
        result.to_str().unwrap(),
        hb.to_str().unwrap(),
        files.to_str().unwrap(),
    ];
    let dump: &[&str] = &["--ghost-limit", "4M"];
    let a = kit.round_trip_opts("ghosts", &a, &result, 1, (dump, &[]), |img| {
        // Their directory goes too: the restore makes it for the while.
        std::fs::remove_dir(&files).unwrap();
        let mut by_size: Vec<_> = (1..=3)
            .map(|i| ghost(&img.join(format!("ghost-file-{i}.img"))))
            .collect();
        by_size.sort_by_key(|(h, _)| h.size);
        // The small file is written whole after its head; the others as
        // chunks: the sparse one only where it has data.
        let (small, big, sparse) = (&by_size[0], &by_size[1], &by_size[2]);
        assert_eq!((small.0.chunks, small.1.len()), (None, 0));
        assert_eq!(big.0.size, Some(3 << 20));
        assert_eq!(big.1, vec![(0, 3 << 20, 3 << 20)]);
        assert_eq!(sparse.0.size, Some(64 << 20));
        assert_eq!(
            sparse.1,
            vec![(0, 4096, 4096), (40 << 20, 100 << 10, 100 << 10)]
        );
    });
    assert!(a.starts_with("OK"), "{a}");
    assert!(!files.exists(), "the directory made for the restore stays");
}

#[test]
fn a_deleted_file_over_the_ghost_limit_is_refused() {
    let kit = Kit::new();
    let (result, hb, files) = args(&kit);
    let prog = kit.start(
        "ghosts",
        &[
            result.to_str().unwrap(),
            hb.to_str().unwrap(),
            files.to_str().unwrap(),
        ],
    );
    let dir = kit.path("img");
    let o = kit.dump(prog.pid, &dir, &[]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    let fd5 = format!("pid {} fd 5: a deleted file taking ", prog.pid);
    assert!(e.contains(&fd5), "{e}");
    assert!(
        e.contains("more than the ghost limit of 1048576 bytes (raise it with --ghost-limit)"),
        "{e}"
    );
    assert!(images(&dir).is_empty(), "{:?}", images(&dir));
    // The task runs on with its files as they were.
    let a = kit::proc::ask_tree(prog.pid, &result, 1);
    assert!(a.starts_with("OK"), "{a}");
}

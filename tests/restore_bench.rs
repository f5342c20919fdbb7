//! Restore benchmark (ignored by default; run with
//! `cargo test --release --test restore_bench -- --ignored --nocapture`):
//! the `counter` fixture grown to 16,384 extra private anonymous mappings
//! holding 1 GiB of pages and 9,000 socketpairs (18,000 fds), restored
//! detached and timed end to end (crit start to crit exit).

mod kit;
use crit::image::entry::EntryReader;
use crit::image::pb;
use crit::image::source::Source;
use crit::image::typed::{read_all, read_one, ImageBuilder};
use kit::restore::*;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const MAPS: u64 = 16384;
const PAGES_PER_MAP: u64 = 16; // 64 KiB each: 1 GiB in all
const PAIRS: u32 = 9000;
const BASE: u64 = 0x1000_0000_0000;

fn write_img<T: prost::Message>(path: &Path, magic: &str, entries: &[T]) {
    let mut b = ImageBuilder::new(magic).unwrap();
    for e in entries {
        b.entry(e);
    }
    std::fs::write(path, &b.bytes).unwrap();
}

fn generate(dir: &Path) {
    let src = images("counter");
    for e in std::fs::read_dir(&src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
    }
    // Mappings with a one-page gap so that they stay separate.
    let mut mm: pb::MmEntry = read_one(&dir.join("mm-26659.img"), "MM").unwrap();
    let stride = (PAGES_PER_MAP + 1) * 4096;
    for i in 0..MAPS {
        let start = BASE + i * stride;
        mm.vmas.push(pb::VmaEntry {
            start,
            end: start + PAGES_PER_MAP * 4096,
            pgoff: 0,
            shmid: 0,
            prot: 3,
            flags: 0x22,
            status: 1 | (1 << 9),
            fd: -1,
            madv: None,
            fdflags: None,
        });
    }
    mm.vmas.sort_by_key(|v| v.start);
    write_img(&dir.join("mm-26659.img"), "MM", &[mm]);
    // Pagemap: the original entries, then ours; their pages appended.
    let raw = std::fs::read(dir.join("pagemap-26659.img")).unwrap();
    let mut b = ImageBuilder::new("PAGEMAP").unwrap();
    let mut src = Source::from_slice("pagemap-26659.img", &raw);
    let mut rd = EntryReader::expect(&mut src, "PAGEMAP").unwrap();
    while let Some(e) = rd.next_entry().unwrap() {
        b.message(e.message);
    }
    for i in 0..MAPS {
        b.entry(&pb::PagemapEntry {
            vaddr: BASE + i * stride,
            compat_nr_pages: 0,
            in_parent: None,
            flags: Some(4),
            nr_pages: Some(PAGES_PER_MAP),
        });
    }
    std::fs::write(dir.join("pagemap-26659.img"), &b.bytes).unwrap();
    let mut pages = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("pages-1.img"))
        .unwrap();
    let chunk: Vec<u8> = (0..PAGES_PER_MAP * 4096).map(|k| (k % 251) as u8).collect();
    for _ in 0..MAPS {
        pages.write_all(&chunk).unwrap();
    }
    // Socketpairs at fds 20.. .
    let mut files: Vec<pb::FileEntry> = read_all(&dir.join("files.img"), "FILES").unwrap();
    let mut fds: Vec<pb::FdinfoEntry> = read_all(&dir.join("fdinfo-2.img"), "FDINFO").unwrap();
    let model = pb::UnixSkEntry {
        r#type: 1,
        state: 1,
        flags: 2,
        backlog: 0,
        ..Default::default()
    };
    let mut id = 1000u32;
    let mut fd = 20u32;
    for k in 0..PAIRS {
        let (a, bb) = (500_000 + 2 * k, 500_001 + 2 * k);
        for (ino, peer) in [(a, bb), (bb, a)] {
            let mut u = model.clone();
            u.id = id;
            u.ino = ino;
            u.peer = peer;
            files.push(pb::FileEntry {
                r#type: pb::FdTypes::Unixsk as i32,
                id,
                usk: Some(u),
                ..Default::default()
            });
            fds.push(pb::FdinfoEntry {
                id,
                flags: 0,
                fd,
                r#type: pb::FdTypes::Unixsk as i32,
                ..Default::default()
            });
            id += 1;
            fd += 1;
        }
    }
    write_img(&dir.join("files.img"), "FILES", &files);
    write_img(&dir.join("fdinfo-2.img"), "FDINFO", &fds);
}

#[test]
#[ignore]
fn bench_16384_mappings_1gib_9000_socketpairs() {
    let _g = lock();
    prepare();
    if !require_free("counter") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    generate(d.path());
    // Warm the page cache so that disk speed is not measured.
    let _ = std::fs::read(d.path().join("pages-1.img"));
    let t = Instant::now();
    let out = crit()
        .args(["restore", "-d", "-vv", "-D"])
        .arg(d.path())
        .output()
        .unwrap();
    let took = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let maps = std::fs::read_to_string("/proc/26659/maps")
        .map(|m| m.lines().count())
        .unwrap_or(0);
    let nfds = std::fs::read_dir("/proc/26659/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let answers = if out.status.success() {
        check("counter")
    } else {
        vec![]
    };
    cleanup("counter");
    assert!(out.status.success(), "{stderr}");
    println!("restore of 16,384 mappings + 1 GiB + 9,000 socketpairs: {took:?} ({maps} mappings, {nfds} fds; {answers:?})");
    println!("{stderr}");
    assert!(
        answers.first().is_some_and(|a| a.starts_with("OK")),
        "{answers:?}"
    );
}

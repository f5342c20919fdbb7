//! `crit edit` on a large files.img holds what it knows of the unix
//! sockets and a few MiB, not the entries decoded: every other entry is
//! copied through as it lies in the file. One test in this binary, so the
//! children's peak RSS is crit's alone.

mod kit;
use crit::image::pb;
use crit::image::typed::ImageBuilder;

const O_RDWR: u32 = 0o2;
const O_LARGEFILE: u32 = 0o100000;

/// A stream socketpair end as CRIU writes it.
fn usk(id: u32, ino: u32, peer: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Unixsk as i32,
        id,
        usk: Some(pb::UnixSkEntry {
            id,
            ino,
            r#type: 1,
            state: 1,
            flags: O_RDWR,
            peer,
            opts: pb::SkOptsEntry {
                so_sndbuf: 212_992,
                so_rcvbuf: 212_992,
                reuseaddr: Some(false),
                so_priority: Some(0),
                so_rcvlowat: Some(1),
                ..Default::default()
            },
            ns_id: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn reg(id: u32, k: u32) -> pb::FileEntry {
    pb::FileEntry {
        r#type: pb::FdTypes::Reg as i32,
        id,
        reg: Some(pb::RegFileEntry {
            id,
            flags: O_LARGEFILE,
            pos: u64::from(k) * 4096,
            name: format!("/var/lib/bench/d{:02}/data-{k:06}.db", k % 37),
            size: Some(u64::from(k) << 20),
            mode: Some(0o100644),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn edit_of_a_large_files_img_is_bounded() {
    const MB: usize = 1 << 20;
    const PAIRS: u32 = 30_000;
    const REGS: u32 = 60_000;
    let t = kit::copy_fixture("usk_pair");
    let d = t.path();
    let mut files = ImageBuilder::new("FILES").unwrap();
    let (mut id, ino0) = (1u32, 1_000_000u32);
    for k in 0..PAIRS {
        let (a, b) = (ino0 + 2 * k, ino0 + 2 * k + 1);
        files.entry(&usk(id, b, a)).entry(&usk(id + 1, a, b));
        id += 2;
    }
    for k in 0..REGS {
        files.entry(&reg(id, k));
        id += 1;
    }
    let before = files.bytes;
    let size = before.len();
    std::fs::write(d.join("files.img"), &before).unwrap();

    // The last pair's first end: the new external entry and both changed
    // entries are near the end of the unix sockets, far from either end
    // of the file.
    let ino = (ino0 + 2 * (PAIRS - 1)).to_string();
    let out = kit::crit()
        .args(["edit", d.to_str().unwrap(), "--external", &ino])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.ends_with("files.img: 2 entries changed, 1 added; written\n"),
        "{stdout}"
    );
    let peak = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .unwrap()
        .max_rss() as usize
        * 1024;

    eprintln!(
        "crit edit: peak RSS {} MiB for a files.img of {} MiB",
        peak / MB,
        size / MB
    );

    // Only the last pair's entries changed: what comes before and after
    // them is as it was.
    let after = std::fs::read(d.join("files.img")).unwrap();
    let same_start = before
        .iter()
        .zip(&after)
        .take_while(|(a, b)| a == b)
        .count();
    let same_end = before
        .iter()
        .rev()
        .zip(after.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(after.len() > size, "no entry added");
    assert!(
        same_start + same_end + 400 > size,
        "{} of {size} bytes kept",
        same_start + same_end
    );

    // Holding every entry decoded (about 2 KiB each, as prost lays out
    // every optional sub-message inline) would take 20 times the file.
    assert!(
        peak < 6 * size + 64 * MB,
        "crit edit peaked at {} MiB for a files.img of {} MiB ({} entries)",
        peak / MB,
        size / MB,
        2 * PAIRS + REGS
    );
}

//! `crit x DIR|ARCHIVE mem PID`, `ps --dot` and `sk --dot`:
//!
//! * a real dump of a task with 256 MiB of memory and a known string
//!   every 64 MiB (straddling two pages): the search finds each copy, at
//!   its address, in its mapping; the hex dump shows it; the same through
//!   tar, tar.gz and tar.zst archives; crit's peak RSS stays far below
//!   the pages' size in every case;
//! * the CRIU 4.2 counter fixture: its 4 MiB pattern found 16,384 times;
//! * a parent chain made from that fixture (half of each run moved to a
//!   parent dump, one run made lazy): the same bytes, counted as parent
//!   and lazy pages, in a dir and in an archive; a missing parent named;
//! * Graphviz output that `dot -Tsvg` accepts.

mod kit;

use crit::image::pb;
use crit::image::store::Images;
use kit::archive::{Codec, Pack, CODECS};
use kit::cli::{assert_fails, fixture_dirs, run, x};
use kit::crit;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn xj(target: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    serde_json::from_slice(&x(target, &a)).unwrap()
}

/// Peak RSS in MiB of `crit ARGS` (measured by python's getrusage of its
/// only child), and its stdout.
fn peak_mib(args: &[&str]) -> (u64, Vec<u8>) {
    let py = "import resource, subprocess, sys\n\
              r = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n\
              sys.stderr.write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) + '\\n')\n\
              sys.stdout.buffer.write(r.stdout)\n\
              sys.exit(r.returncode)\n";
    kit::host::require("python3", "python3");
    let o = Command::new("python3")
        .arg("-c")
        .arg(py)
        .arg(env!("CARGO_BIN_EXE_crit"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let kib: u64 = String::from_utf8_lossy(&o.stderr).trim().parse().unwrap();
    (kib / 1024, o.stdout)
}

const MIB: u64 = 256;
const STRIDE: u64 = 64 << 20;

#[test]
fn search_and_dump_find_what_a_live_task_wrote() {
    let kit = kit::dump::Kit::new();
    let prog = kit.start("needles", &[&MIB.to_string()]);
    let base = u64::from_str_radix(prog.ready.split_whitespace().nth(2).unwrap(), 16).unwrap();
    let dir = kit.path("img");
    kit::dump::ok(&kit.dump(prog.pid, &dir, &[]));
    let pid = prog.pid.to_string();
    let want: Vec<u64> = (0..MIB * (1 << 20) / STRIDE)
        .map(|k| base + 4090 + k * STRIDE)
        .collect();

    let mut targets = vec![dir.clone()];
    for codec in CODECS {
        targets.push(
            Pack::new()
                .dir(&dir, "checkpoint/")
                .write(codec, &kit.path(&format!("a.{}", codec.ext()))),
        );
    }
    for t in &targets {
        let tn = t.display().to_string();
        for search in [
            vec!["--search", "CRIT-NEEDLE"],
            vec!["--search-hex", "435249542d4e45454 44c45"],
        ] {
            let mut args = vec!["x", &tn, "mem", &pid];
            args.extend(&search);
            args.push("--json");
            let (peak, out) = peak_mib(&args);
            // The pages are 256 MiB: read a chunk at a time, never whole.
            assert!(peak < 64, "{tn}: crit peaked at {peak} MiB");
            let v: Value = serde_json::from_slice(&out).unwrap();
            let got: Vec<u64> = v["matches"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| {
                    u64::from_str_radix(m["address"].as_str().unwrap().trim_start_matches("0x"), 16)
                        .unwrap()
                })
                .collect();
            assert_eq!(got, want, "{tn} {search:?}");
            for m in v["matches"].as_array().unwrap() {
                let start = u64::from_str_radix(
                    m["mapping"]["start"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("0x"),
                    16,
                )
                .unwrap();
                assert!(start <= base, "{m}");
                assert_eq!(m["mapping"]["prot"], "rw-");
            }
        }
        // The summary: the whole block is in the images.
        let s = xj(t, &["mem", &pid]);
        let block = s["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["start"] == format!("{base:#x}"))
            .unwrap_or_else(|| panic!("no mapping at {base:#x}: {s}"));
        assert_eq!(block["in_images"], MIB * 256, "{block}");
        // A hex dump across the page boundary shows the string whole.
        let at = format!("{:#x}", base + STRIDE + 4090);
        let text = String::from_utf8(x(t, &["mem", &pid, "--addr", &at, "--len", "11"])).unwrap();
        assert!(
            text.contains(" 43 52 49 54 2d 4e 45 45  44 4c 45 ") && text.contains("|CRIT-NEEDLE|"),
            "{text}"
        );
        let j = xj(t, &["mem", &pid, "--addr", &at, "--len", "11"]);
        let hex: String = j["pieces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["hex"].as_str().unwrap())
            .collect();
        assert_eq!(hex, "435249542d4e454544 4c45".replace(' ', ""));
    }
    let (peak, _) = peak_mib(&[
        "x",
        dir.to_str().unwrap(),
        "mem",
        &pid,
        "--addr",
        &format!("{base:#x}"),
        "--len",
        &(64u64 << 20).to_string(),
    ]);
    assert!(peak < 64, "a 64 MiB hex dump peaked at {peak} MiB");
    kit::dump::kill_tree(prog.pid);
}

#[test]
fn the_counter_fixtures_pattern_is_found_in_its_heap() {
    let dir = kit::fixture("counter");
    let pat: String = (0..256u32)
        .map(|i| format!("{:02x}", (i * 7 + 3) & 255))
        .collect();
    let v = xj(&dir, &["mem", "26659", "--search-hex", &pat]);
    let m = v["matches"].as_array().unwrap();
    // The buffer is 4 MiB of a pattern with a period of 256 bytes.
    assert_eq!(v["count"], 16384);
    assert_eq!(m.len(), 16384);
    let addr = |i: usize| {
        u64::from_str_radix(
            m[i]["address"].as_str().unwrap().trim_start_matches("0x"),
            16,
        )
        .unwrap()
    };
    for i in 1..m.len() {
        assert_eq!(addr(i) - addr(i - 1), 256);
        assert_eq!(m[i]["mapping"], m[0]["mapping"]);
    }
    let text = String::from_utf8(x(
        &dir,
        &["mem", "26659", "--search", "/tmp/scen/bin/counter"],
    ))
    .unwrap();
    assert!(
        text.contains("[stack?]") && text.ends_with(" matches\n"),
        "{text}"
    );
}

/// Makes `child` from the counter fixture: every present run of more
/// than one page keeps its second half and gives its first half to the
/// parent dump (the fixture itself); the stack's run becomes lazy.
/// Returns (pages moved to the parent, lazy pages).
fn make_chain(child: &Path) -> (u64, u64) {
    let src = kit::fixture("counter");
    let (_, entries) = Images::Dir(src.clone())
        .pagemap("pagemap-26659.img")
        .unwrap();
    let stack = entries.iter().map(|e| e.vaddr).max().unwrap();
    let (mut moved, mut lazy) = (0, 0);
    kit::chain::derive(&src, child, |_, vaddr, n| {
        if vaddr == stack {
            lazy += n;
            (n, kit::chain::PE_LAZY)
        } else {
            moved += n / 2;
            (n / 2, kit::chain::PE_PARENT)
        }
    });
    (moved, lazy)
}

#[test]
fn parent_chains_and_lazy_pages_are_followed_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let child = tmp.path().join("child");
    let (moved, lazy) = make_chain(&child);
    std::os::unix::fs::symlink(kit::fixture("counter"), child.join("parent")).unwrap();
    let orig = kit::fixture("counter");
    let s = xj(&child, &["mem", "26659"]);
    let o = xj(&orig, &["mem", "26659"]);
    assert_eq!(s["in_parent"], moved);
    assert_eq!(s["lazy"], lazy);
    assert_eq!(s["parents"], 1);
    assert_eq!(
        s["in_images"].as_u64().unwrap() + moved + lazy,
        o["in_images"].as_u64().unwrap()
    );
    // The heap reads the same, though its bytes now come from two dumps.
    let heap = o["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["in_images"] == 1027)
        .unwrap();
    let (start, end) = (
        heap["start"].as_str().unwrap(),
        heap["end"].as_str().unwrap(),
    );
    let len = (u64::from_str_radix(&end[2..], 16).unwrap()
        - u64::from_str_radix(&start[2..], 16).unwrap())
    .to_string();
    let dump_args = ["mem", "26659", "--addr", start, "--len", &len];
    assert_eq!(x(&child, &dump_args), x(&orig, &dump_args));
    let pat: String = (0..256u32)
        .map(|i| format!("{:02x}", (i * 7 + 3) & 255))
        .collect();
    let search = ["mem", "26659", "--search-hex", &pat];
    assert_eq!(x(&child, &search), x(&orig, &search));
    // The lazy stack run is named, not shown.
    let st = o["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["what"] == "[stack?]")
        .unwrap();
    let text = String::from_utf8(x(
        &child,
        &[
            "mem",
            "26659",
            "--addr",
            st["start"].as_str().unwrap(),
            "--len",
            "0x21000",
        ],
    ))
    .unwrap();
    assert!(text.contains("(not in the images: lazy pages"), "{text}");

    // The same chain inside an archive, the parent beside the images.
    for codec in [Codec::Tar, Codec::Zstd] {
        let a = Pack::new()
            .dir(&orig, "parent-images/")
            .dir(&child, "checkpoint/")
            .symlink("checkpoint/parent", "../parent-images")
            .write(codec, &tmp.path().join(format!("chain.{}", codec.ext())));
        assert_eq!(x(&a, &dump_args), x(&child, &dump_args), "{codec:?}");
        assert_eq!(x(&a, &search), x(&child, &search), "{codec:?}");
        assert_eq!(
            x(&a, &["mem", "26659", "--json"]),
            x(&child, &["mem", "26659", "--json"])
        );
    }

    // Without the parent, its pages are named as missing.
    std::fs::remove_file(child.join("parent")).unwrap();
    let s = xj(&child, &["mem", "26659"]);
    assert_eq!(s["missing_parent"], moved);
    assert_eq!(s["in_parent"], 0);
    let text = String::from_utf8(x(&child, &dump_args)).unwrap();
    assert!(
        text.contains("(in a parent dump that is not there)"),
        "{text}"
    );
}

#[test]
fn mem_refuses_what_does_not_fit_in_one_line() {
    let dir = kit::fixture("counter");
    let d = dir.to_str().unwrap();
    for (args, want) in [
        (vec!["mem"], "which task?"),
        (vec!["mem", "4242"], "task 4242 is not in"),
        (
            vec!["mem", "26659", "--addr", "0x1000"],
            "--addr and --len go together",
        ),
        (
            vec!["mem", "26659", "--addr", "1", "--len", "2", "--search", "a"],
            "different views",
        ),
        (vec!["mem", "26659", "--search", ""], "the pattern is empty"),
        (vec!["ps", "1"], "takes no PID"),
        (vec!["fds", "--dot"], "--dot applies only to ps and sk"),
        (vec!["rss", "--search", "a"], "--search applies only to mem"),
        (
            vec!["mem", "26659", "--search-hex", "abc"],
            "odd number of hex digits",
        ),
        (
            vec!["mem", "26659", "--addr", "zz", "--len", "1"],
            "is not a number",
        ),
    ] {
        let o = run(crit().arg("x").arg(d).args(&args), None);
        assert_fails(&o, want);
    }
}

#[test]
fn dot_output_is_a_graph_dot_accepts() {
    let dot = kit::host::require("dot", "graphviz");
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = fixture_dirs();
    let a = kit::archive::podman_like(
        &kit::fixture("usk_server"),
        Codec::Gzip,
        &tmp.path().join("u.tgz"),
    );
    dirs.push(a);
    for d in dirs {
        for view in ["ps", "sk"] {
            let g = String::from_utf8(x(&d, &[view, "--dot"])).unwrap();
            assert!(
                g.starts_with(&format!("digraph \"{view}\" {{\n")) && g.ends_with("}\n"),
                "{g}"
            );
            let o = run(Command::new(&dot).arg("-Tsvg"), Some(g.as_bytes()));
            assert!(
                o.status.success(),
                "{} {view}: {}\n{g}",
                d.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            assert!(
                String::from_utf8_lossy(&o.stdout).contains("<svg"),
                "{view}"
            );
        }
    }
    // What the graphs hold: usk_server's tree and sockets.
    let g = String::from_utf8(x(&kit::fixture("usk_server"), &["sk", "--dot"])).unwrap();
    assert!(
        g.contains("/tmp/scen/sock/srv.sock") && g.contains("label=\"fd "),
        "{g}"
    );
    assert!(g.contains("dir=both"), "a connected pair: {g}");
    let g = String::from_utf8(x(&kit::fixture("usk_ext_dgram"), &["sk", "--dot"])).unwrap();
    assert!(
        g.contains("outside the dump") && g.contains("style=dashed"),
        "{g}"
    );
    let g = String::from_utf8(x(&kit::fixture("kitchen"), &["ps", "--dot"])).unwrap();
    assert_eq!(
        g.matches(" -> ").count(),
        1,
        "kitchen is a parent and a child: {g}"
    );
    assert!(g.contains("2 threads"), "{g}");
}

#[test]
fn shared_memfd_mappings_show_the_memfds_contents() {
    // kitchen maps a memfd shared: its pages are a segment of their own
    // (files.img -> memfd inode -> memfd.img shmid -> pagemap-shmem).
    let dir = kit::fixture("kitchen");
    let imgs = Images::Dir(dir.clone());
    let mm: pb::MmEntry = imgs.read_one("mm-26773.img", "MM").unwrap();
    let vma = mm
        .vmas
        .iter()
        .find(|v| v.status & crit::image::flags::VMA_AREA_MEMFD != 0)
        .unwrap();
    let files: Vec<pb::FileEntry> = imgs.read_all("files.img", "FILES").unwrap();
    let inode = files
        .iter()
        .find(|f| u64::from(f.id) == vma.shmid)
        .and_then(|f| f.memfd.as_ref())
        .unwrap()
        .inode_id;
    let inodes: Vec<pb::MemfdInodeEntry> = imgs.read_all("memfd.img", "MEMFD_INODE").unwrap();
    let shmid = inodes
        .iter()
        .find(|i| i.inode_id == u64::from(inode))
        .unwrap()
        .shmid;
    let (pages_id, entries) = imgs.pagemap(&format!("pagemap-shmem-{shmid}.img")).unwrap();
    let pages = std::fs::read(dir.join(format!("pages-{pages_id}.img"))).unwrap();
    assert_eq!(entries[0].vaddr, 0);
    let want: String = pages[..64].iter().map(|b| format!("{b:02x}")).collect();
    let j = xj(
        &dir,
        &[
            "mem",
            "26773",
            "--addr",
            &format!("{:#x}", vma.start),
            "--len",
            "64",
        ],
    );
    assert_eq!(j["pieces"][0]["held"], "images", "{j}");
    assert_eq!(j["pieces"][0]["hex"], want.as_str());
    let s = xj(&dir, &["mem", "26773"]);
    let m = s["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["start"] == format!("{:#x}", vma.start))
        .unwrap();
    let held: u64 = entries
        .iter()
        .map(|e| e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages)))
        .sum();
    assert_eq!(
        m["in_images"],
        held.min((vma.end - vma.start) / 4096),
        "{m}"
    );
}

/// Rewrites `mm-26659.img` of the counter copy in `dir` with `f` applied
/// to its vmas.
fn edit_vmas(dir: &Path, f: impl FnOnce(&mut Vec<pb::VmaEntry>)) {
    let imgs = Images::Dir(dir.to_path_buf());
    let mut mm: pb::MmEntry = imgs.read_one("mm-26659.img", "MM").unwrap();
    f(&mut mm.vmas);
    let mut b = crit::image::typed::ImageBuilder::new("MM").unwrap();
    b.entry(&mm);
    crit::image::typed::write_atomic(&dir.join("mm-26659.img"), &b.bytes).unwrap();
}

#[test]
fn mem_refuses_reversed_and_overlapping_vmas_by_address() {
    // A vma whose end is below its start used to be counted as 2^52
    // pages; overlapping ones were blamed on the pagemap.
    let tmp = kit::copy_fixture("counter");
    let dir = tmp.path();
    let mut orig = Vec::new();
    edit_vmas(dir, |v| {
        orig = v.clone();
        let w = &mut v[3];
        (w.start, w.end) = (w.end, w.start);
    });
    let want = format!(
        "mm-26659.img: vma {:#x}-{:#x} ends where or before it starts",
        orig[3].end, orig[3].start
    );
    for view in [vec!["mem", "26659"], vec!["mem", "26659", "--json"]] {
        assert_fails(&run(crit().arg("x").arg(dir).args(&view), None), &want);
    }
    edit_vmas(dir, |v| {
        *v = orig.clone();
        v[3].end = v[5].end;
    });
    let want = format!(
        "mm-26659.img: vmas {:#x}-{:#x} and {:#x}-{:#x} overlap",
        orig[3].start, orig[5].end, orig[4].start, orig[4].end
    );
    assert_fails(
        &run(crit().arg("x").arg(dir).args(["mem", "26659"]), None),
        &want,
    );
}

#[test]
fn pages_past_the_end_of_a_cut_pages_image_are_not_counted_as_held() {
    // The pagemap claims 1052 pages; the pages image keeps 2 and a half.
    let tmp = kit::copy_fixture("counter");
    let dir = tmp.path();
    let pages = dir.join("pages-1.img");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap();
    f.set_len(2 * 4096 + 2000).unwrap();
    drop(f);
    let s = xj(dir, &["mem", "26659"]);
    assert_eq!(s["in_images"], 2, "{s}");
    assert_eq!(s["cut_short"], 1050, "{s}");
    let text = String::from_utf8(x(dir, &["mem", "26659"])).unwrap();
    assert!(
        text.contains("1050 pages are not in the images: the pagemap places them past the end"),
        "{text}"
    );
    assert!(text.contains("cut-short"), "{text}");
    // The heap's bytes are named as not there, not dumped.
    let heap = s["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["rest"] == 1028)
        .unwrap();
    let start = heap["start"].as_str().unwrap();
    let text =
        String::from_utf8(x(dir, &["mem", "26659", "--addr", start, "--len", "64"])).unwrap();
    assert!(text.contains("past the end of its pages image"), "{text}");
    // Without the pages image at all, it is named.
    std::fs::remove_file(&pages).unwrap();
    assert_fails(
        &run(crit().arg("x").arg(dir).args(["mem", "26659"]), None),
        "pages-1.img: No such file",
    );
}

#[test]
fn search_json_is_streamed_not_held() {
    // Every zero byte of the counter fixture's pages: 108,618 matches.
    // Held as a list until the end they took about 60 MiB (a byte
    // searched for in a GiB of pages took tens of GB); streamed, crit's
    // memory does not grow with them.
    let dir = kit::fixture("counter");
    let d = dir.to_str().unwrap();
    let (mib, out) = peak_mib(&["x", d, "mem", "26659", "--search-hex", "00", "--json"]);
    let v: Value = serde_json::from_slice(&out).unwrap();
    let n = v["matches"].as_array().unwrap().len() as u64;
    assert_eq!(v["count"], n);
    assert!(n > 100_000, "{n}");
    assert!(mib < 24, "peak {mib} MiB for {n} matches");
    // No match: an empty list.
    let v = xj(&dir, &["mem", "26659", "--search", "no such text here"]);
    assert_eq!(v["matches"], serde_json::json!([]));
    assert_eq!(v["count"], 0);
}

//! Incremental dumps: `crit restore` follows the `parent` links of an
//! images dir for the pages marked `in_parent`, through a chain of
//! dumps, as CRIU's pre-dump chains have them. The chain is made here
//! from one real dump of a self-checking tree (tests/programs/scale.c):
//! a middle dump keeps three quarters of every run of pages and gives
//! the first quarter to the full dump; the last keeps half and gives the
//! first half to the middle one (which holds part of it and passes the
//! rest on). Every restored task checks its memory. Without the link the
//! restore is refused in one line, and nothing is left running.
//!
//! A real chain (`crit pre-dump`, then `crit dump` on top of it) damaged
//! in each way a chain breaks is refused in one line that names the dump
//! directory and its file or link at fault, and leaves nothing running.

mod kit;

use crit::image::pb;
use crit::image::typed::{write_atomic, ImageBuilder};

use std::path::Path;
use std::time::{Duration, Instant};

/// Copies the images of `src` to `dst`, giving the first `num/den` of
/// every present run of every task to the parent dump `parent`.
fn split(src: &Path, dst: &Path, num: u64, den: u64, parent: &Path) {
    kit::chain::derive(src, dst, |_, _, n| (n * num / den, kit::chain::PE_PARENT));
    std::os::unix::fs::symlink(parent, dst.join("parent")).unwrap();
}

#[test]
fn a_chain_of_dumps_restores_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let result = tmp.path().join("result");
    let a = |s: &'static str| std::ffi::OsStr::new(s);
    let (mut child, _) =
        kit::proc::start_ready("scale", &[a("3"), a("6"), a("16"), result.as_os_str()]);
    let pid = child.id() as i32;
    let pids = kit::proc::tree(pid);
    assert_eq!(pids.len(), 3);
    let full = tmp.path().join("full");
    let d = kit::crit()
        .args(["dump", "-t", &pid.to_string(), "-D"])
        .arg(&full)
        .output()
        .unwrap();
    assert!(d.status.success(), "{}", String::from_utf8_lossy(&d.stderr));
    let _ = child.wait();
    let t = Instant::now();
    while pids.iter().any(|&p| kit::proc::exists(p)) && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mid = tmp.path().join("mid");
    let last = tmp.path().join("last");
    split(&full, &mid, 1, 4, &full);
    split(&full, &last, 1, 2, Path::new("../mid"));
    // What x mem sees: half of the pages in the parents.
    let s: serde_json::Value = serde_json::from_slice(
        &kit::crit()
            .args([
                "x",
                last.to_str().unwrap(),
                "mem",
                &pid.to_string(),
                "--json",
            ])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        s["in_parent"].as_u64().unwrap() > 0 && s["missing_parent"] == 0,
        "{s}"
    );

    // Without its parent the chain is broken: refused, nothing runs.
    std::fs::rename(&mid, tmp.path().join("elsewhere")).unwrap();
    let r = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(&last)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert_eq!(r.status.code(), Some(1), "{err}");
    assert!(
        err.lines().count() == 1
            && err.contains("last/parent: points to ../mid, which does not exist"),
        "{err}"
    );
    assert!(
        pids.iter().all(|&p| !kit::proc::exists(p)),
        "a refused restore leaves nothing"
    );
    std::fs::rename(tmp.path().join("elsewhere"), &mid).unwrap();

    let r = kit::crit()
        .args(["restore", "-d", "--shell-job", "-D"])
        .arg(&last)
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let lines = kit::proc::ask_tree(pid, &result, 3);
    assert_eq!(lines.lines().count(), 3, "answers: {lines}");
    assert!(
        lines.lines().all(|l| l.starts_with("OK")),
        "answers: {lines}"
    );
}

/// Copies images dir `src` to `dst`, its `parent` link as a link.
fn copy_dump(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        let to = dst.join(p.file_name().unwrap());
        match std::fs::read_link(&p) {
            Ok(l) => std::os::unix::fs::symlink(l, to).unwrap(),
            Err(_) => {
                std::fs::copy(&p, to).unwrap();
            }
        }
    }
}

/// Each damage to a copy of a real chain fails the restore with exit 1
/// and one line naming the directory and file or link at fault, before
/// anything of the tree is made; the chain itself restores every page.
#[test]
fn a_damaged_chain_names_the_dump_at_fault() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let mut g = kit::gens::start(&root, 16, 2, 2000, false, false);
    let pid = g.pid;
    let (d1, d2) = (root.join("chain/d1"), root.join("chain/d2"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let p = pid.to_string();
    kit::gens::ok(&kit::gens::crit(&["pre-dump", "-t", &p, "-D", &s(&d1)]));
    std::thread::sleep(Duration::from_millis(200));
    kit::gens::ok(&kit::gens::crit(&[
        "dump",
        "-t",
        &p,
        "-D",
        &s(&d2),
        "--prev-images-dir",
        "../d1",
    ]));
    let _ = g.child.wait();
    assert!(kit::proc::reap(&[pid], Duration::from_secs(5)).is_empty());
    let pages = std::fs::read_dir(&d1)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("pages-"))
        .unwrap();
    let pagemap = format!("pagemap-{pid}.img");
    for case in [
        "no pagemap",
        "a pagemap without the pages",
        "no pages",
        "pages cut short",
        "no link",
        "a dangling link",
        "no parent directory",
    ] {
        let at = root.join(case.replace(' ', "-"));
        let (c1, c2) = (at.join("d1"), at.join("d2"));
        copy_dump(&d1, &c1);
        copy_dump(&d2, &c2);
        let (named, says) = match case {
            "no pagemap" => {
                std::fs::remove_file(c1.join(&pagemap)).unwrap();
                (c1.join(&pagemap), format!("missing, yet {} leaves", s(&c2)))
            }
            "a pagemap without the pages" => {
                // Only its head: the pages image it names, no entries.
                let id: u32 = pages["pages-".len()..pages.len() - 4].parse().unwrap();
                let mut b = ImageBuilder::new("PAGEMAP").unwrap();
                b.entry(&pb::PagemapHead { pages_id: id });
                write_atomic(&c1.join(&pagemap), &b.bytes).unwrap();
                (c1.join(&pagemap), "holds no pages at 0x".into())
            }
            "no pages" => {
                std::fs::remove_file(c1.join(&pages)).unwrap();
                (
                    c1.join(&pages),
                    "missing, yet the pagemap there needs".into(),
                )
            }
            "pages cut short" => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(c1.join(&pages))
                    .unwrap();
                let len = f.metadata().unwrap().len();
                f.set_len(len - 4096).unwrap();
                let says = format!("holds {} bytes, the pagemap needs {len}", len - 4096);
                (c1.join(&pages), says)
            }
            "no link" => {
                std::fs::remove_file(c2.join("parent")).unwrap();
                (c2.join("parent"), format!("missing, yet {} leaves", s(&c2)))
            }
            "a dangling link" => {
                std::fs::remove_file(c2.join("parent")).unwrap();
                std::os::unix::fs::symlink("../gone", c2.join("parent")).unwrap();
                (
                    c2.join("parent"),
                    "points to ../gone, which does not exist".into(),
                )
            }
            _ => {
                std::fs::remove_dir_all(&c1).unwrap();
                (
                    c2.join("parent"),
                    "points to ../d1, which does not exist".into(),
                )
            }
        };
        let log = at.join("restore.log");
        let r = kit::gens::crit(&[
            "restore",
            "-d",
            "--shell-job",
            "-D",
            &s(&c2),
            "-o",
            &s(&log),
        ]);
        let e = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(1), "{case}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{case}: {e}");
        let want = format!("pid {pid}: {}: {says}", s(&named));
        assert!(e.contains(&want), "{case}: {e}\nwanted: {want}");
        // Refused before the tree's files were made, let alone its task.
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            log.contains("images read") && !log.contains("files and sockets made"),
            "{case}: the chain was read after the tree was begun:\n{log}"
        );
        assert!(
            kit::proc::reap(&[pid], Duration::from_secs(10)).is_empty(),
            "{case}: the failed restore left pid {pid}"
        );
    }
    // Undamaged, the chain restores every page.
    kit::gens::ok(&kit::gens::restore(&d2, &[]));
    let a = kit::gens::ask(pid, &g.result);
    kit::proc::kill_tree(pid);
    kit::proc::reap(&[pid], Duration::from_secs(5));
    assert!(a.starts_with("OK 4096 "), "{a}");
}

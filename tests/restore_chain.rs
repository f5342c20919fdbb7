//! Incremental dumps: `crit restore` follows the `parent` links of an
//! images dir for the pages marked `in_parent`, through a chain of
//! dumps, as CRIU's pre-dump chains have them. The chain is made here
//! from one real dump of a self-checking tree (tests/programs/scale.c):
//! a middle dump keeps three quarters of every run of pages and gives
//! the first quarter to the full dump; the last keeps half and gives the
//! first half to the middle one (which holds part of it and passes the
//! rest on). Every restored task checks its memory. Without the link the
//! restore is refused in one line, and nothing is left running.

mod kit;

use crit::image::pb;
use crit::image::store::Images;
use crit::image::typed::{write_atomic, ImageBuilder};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PE_PARENT: u32 = 1;
const PE_PRESENT: u32 = 4;

/// Copies the images of `src` to `dst`, giving the first `num/den` of
/// every present run of every task to the parent dump `parent`.
fn split(src: &Path, dst: &Path, num: u64, den: u64, parent: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
        }
    }
    std::os::unix::fs::symlink(parent, dst.join("parent")).unwrap();
    let imgs = Images::Dir(src.to_path_buf());
    for (name, _) in imgs.files().unwrap() {
        if !name.starts_with("pagemap-") || name.starts_with("pagemap-shmem") {
            continue;
        }
        let (id, entries) = imgs.pagemap(&name).unwrap();
        let pages = std::fs::read(src.join(format!("pages-{id}.img"))).unwrap();
        let mut b = ImageBuilder::new("PAGEMAP").unwrap();
        b.entry(&pb::PagemapHead { pages_id: id });
        let mut kept = Vec::new();
        let mut off = 0usize;
        for e in &entries {
            let n = e.nr_pages.unwrap_or(u64::from(e.compat_nr_pages));
            let flags = e.flags.unwrap_or(PE_PRESENT);
            let run = |vaddr: u64, n: u64, flags: u32| pb::PagemapEntry {
                vaddr,
                compat_nr_pages: n as u32,
                in_parent: None,
                flags: Some(flags),
                nr_pages: Some(n),
            };
            if flags & PE_PRESENT == 0 {
                b.entry(e);
                continue;
            }
            let data = &pages[off..off + n as usize * 4096];
            off += data.len();
            let give = n * num / den;
            if give > 0 {
                b.entry(&run(e.vaddr, give, PE_PARENT));
            }
            if n > give {
                b.entry(&run(e.vaddr + give * 4096, n - give, flags));
                kept.extend_from_slice(&data[give as usize * 4096..]);
            }
        }
        write_atomic(&dst.join(&name), &b.bytes).unwrap();
        write_atomic(&dst.join(format!("pages-{id}.img")), &kept).unwrap();
    }
}

#[test]
fn a_chain_of_dumps_restores_every_page() {
    let _g = kit::restore::lock();
    let tmp = tempfile::tempdir().unwrap();
    let result = tmp.path().join("result");
    let exe = kit::cc::program("scale");
    let mut child = Command::new(exe)
        .args(["3", "6", "16"])
        .arg(&result)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
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
        err.lines().count() == 1 && err.contains("parent dump"),
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
    for p in kit::proc::tree(pid) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGUSR1).unwrap();
    }
    let t = Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&result).unwrap_or_default();
        if text.lines().count() >= 3 || t.elapsed() > Duration::from_secs(10) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for p in kit::proc::tree(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
    }
    assert_eq!(lines.lines().count(), 3, "answers: {lines}");
    assert!(
        lines.lines().all(|l| l.starts_with("OK")),
        "answers: {lines}"
    );
}

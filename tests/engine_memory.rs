//! crit's own memory while it dumps and restores stays bounded, whatever
//! the memory of the tree: a task with 384 MiB of written memory, and a
//! tree of 32 tasks with 8 MiB each, are dumped and restored by crit, each
//! restored task checks its memory and descriptors, and the peak resident
//! set of each crit run (measured by scripts/bench-scale-runner.c, the
//! benchmark's runner) must stay well below the memory the tree holds.
//! (Its page images are mapped read-only by the restore, a window at a
//! time; the dump copies through a bounded buffer.)

mod kit;

use std::path::Path;
use std::process::Command;

/// Runs one dump and restore of the scale tree; returns the peak RSS of
/// the dump and of the restore, in MiB.
fn peaks(tasks: u32, mib: u32) -> (u64, u64) {
    let _g = kit::serial::lock();
    let work = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scale = work.path().join("scale");
    let runner = work.path().join("runner");
    kit::cc::compile(&root.join("tests/programs/scale.c"), &scale, &["-O2"]);
    kit::cc::compile(
        &root.join("scripts/bench-scale-runner.c"),
        &runner,
        &["-O2"],
    );
    let dir = work.path().join("images");
    let crit = env!("CARGO_BIN_EXE_crit");
    let out = Command::new(&runner)
        .arg(&scale)
        .args([&tasks.to_string(), &mib.to_string(), "16"])
        .arg(&dir)
        .args([crit, "dump", "-t", "{pid}", "-D", "{dir}", "--", crit])
        .args(["restore", "-d", "-D", "{dir}"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // dump WALL CPU RSS restore WALL CPU RSS ok N of TASKS machine D R
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 15, "{text}");
    assert_eq!(f[9], f[11], "every restored task checked itself: {text}");
    let kib = |s: &str| s.parse::<u64>().unwrap() / 1024;
    (kib(f[3]), kib(f[7]))
}

#[test]
fn one_large_task() {
    let (dump, restore) = peaks(1, 384);
    assert!(dump < 128, "crit dump peaked at {dump} MiB for 384 MiB");
    // Two 32 MiB windows of the pages file are mapped at a time (about
    // 72 MiB in all); 64 MiB windows would pass this bound.
    assert!(
        restore < 112,
        "crit restore peaked at {restore} MiB for 384 MiB"
    );
}

#[test]
fn a_tree_of_tasks() {
    let (dump, restore) = peaks(32, 8);
    assert!(dump < 96, "crit dump peaked at {dump} MiB for 32 x 8 MiB");
    assert!(
        restore < 96,
        "crit restore peaked at {restore} MiB for 32 x 8 MiB"
    );
}

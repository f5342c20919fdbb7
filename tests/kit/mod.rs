//! The test kit: every helper the integration tests share, defined once.
//! Each test binary includes it with `mod kit;` and uses what it needs.
//!
//! - [`cli`]: run the binary on inputs and check its output (toolkit tests);
//! - [`dump`]: build a program, run it, dump it, read the images;
//! - [`restore`]: the CRIU 4.2 fixtures: lay them out, restore, check;
//! - [`archive`]: checkpoint archives packed as podman packs them;
//! - [`chain`]: incremental dumps made from a real one;
//! - [`gens`]: a task that checks every page of its memory itself;
//! - [`sys`]: processes for the kernel-layer tests (`sys_*`);
//! - [`machine`]: what this machine's CPU and limits are;
//! - [`tty`]: talking to a task through its terminal's master;
//! - [`proc`], [`cc`], [`host`], [`serial`]: processes, C programs, what the
//!   host has, the engine lock.
#![allow(dead_code, unused_imports)]

pub mod archive;
pub mod cc;
pub mod chain;
pub mod cli;
pub mod dump;
pub mod gens;
pub mod host;
pub mod machine;
pub mod proc;
pub mod restore;
pub mod serial;
pub mod sys;
pub mod tty;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The crit binary under test.
pub fn crit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crit"))
}

/// Runs crit with `args` and collects its output.
pub fn crit_out<S: AsRef<OsStr>>(args: &[S]) -> Output {
    crit().args(args).output().expect("run crit")
}

/// The project's testdata directory.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The CRIU 4.2 fixture `name` (testdata/criu-4.2/NAME).
pub fn fixture(name: &str) -> PathBuf {
    testdata().join("criu-4.2").join(name)
}

/// A private copy of a fixture's files, for tests that change them.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, d.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    d
}

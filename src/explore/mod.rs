//! `crit x DIR|ARCHIVE VIEW [--json]`: views over a whole set of images,
//! in a directory or in a checkpoint archive (podman's and CRI-O's
//! `checkpoint/` inside a tar, tar.gz or tar.zst, read in place).
//!
//! * `ps`, `fds`, `mems`, `rss` print byte for byte what CRIU 4.2's Python
//!   `crit x` prints (see each module for the format).
//! * `sk` lists the unix sockets of the dump (no crit 4.2 equivalent).
//! * `ps --dot`, `sk --dot`: the same as Graphviz graphs.
//! * `mem PID`: which pages of a task the images hold, a hex dump of a
//!   range, or a search (see `mem`).
//! * `info`: what the checkpoint is (container, engine, times, sizes).
//!
//! With `--json` every view prints the same information as one
//! pretty-printed JSON document instead; each module documents its shape.
//!
//! Text output is streamed through a buffered stdout; a reader that goes
//! away (EPIPE) surfaces as an I/O error that `main` treats as success.

mod dot;
pub mod error;
mod fds;
mod files;
mod info;
mod mem;
mod mems;
mod ps;
mod rss;
mod sk;
mod tasks;

use crate::error::{Error, Result};
use crate::image::store::Images;
use error::ExploreError;
pub use mem::MemView;
use std::io::{BufWriter, StdoutLock, Write};
use std::path::Path;

/// What `crit x` was asked for beyond the view's name.
#[derive(Default)]
pub struct Opts {
    pub json: bool,
    pub dot: bool,
    /// `mem`: the task.
    pub pid: Option<u32>,
    /// `mem`: a range to dump.
    pub addr: Option<u64>,
    pub len: Option<u64>,
    /// `mem`: a pattern to search for.
    pub search: Option<Vec<u8>>,
}

/// Runs view `what` on the images at `path` (a directory or an archive),
/// printing to stdout.
pub fn run(path: &Path, what: &str, o: &Opts) -> Result<()> {
    let not_for = |option, to| ExploreError::NotForView {
        view: what.to_string(),
        option,
        to,
    };
    if o.dot && !matches!(what, "ps" | "sk") {
        return Err(not_for("--dot", "ps and sk").into());
    }
    if what != "mem" {
        if o.pid.is_some() {
            return Err(ExploreError::PidNotWanted(what.to_string()).into());
        }
        if o.addr.is_some() || o.len.is_some() {
            return Err(not_for("--addr/--len", "mem").into());
        }
        if o.search.is_some() {
            return Err(not_for("--search", "mem").into());
        }
    }
    let mem_view = if what == "mem" {
        if o.pid.is_none() {
            return Err(ExploreError::NoPid.into());
        }
        Some(match (o.addr, o.len, &o.search) {
            (None, None, None) => MemView::Summary,
            (Some(addr), Some(len), None) => MemView::Dump { addr, len },
            (None, None, Some(p)) if p.is_empty() => return Err(ExploreError::EmptyPattern.into()),
            (None, None, Some(p)) => MemView::Search(p.clone()),
            (a, l, None) if a.is_some() != l.is_some() => {
                return Err(ExploreError::AddrWithoutLen.into())
            }
            _ => return Err(ExploreError::TwoMemViews.into()),
        })
    } else {
        None
    };
    let images = Images::open(path)?;
    let mut out = Out::new();
    match what {
        "ps" => ps::run(&images, o.json, o.dot, &mut out)?,
        "fds" => fds::run(&images, o.json, &mut out)?,
        "mems" => mems::run(&images, o.json, &mut out)?,
        "rss" => rss::run(&images, o.json, &mut out)?,
        "sk" => sk::run(&images, o.json, o.dot, &mut out)?,
        "info" => info::run(&images, o.json, &mut out)?,
        "mem" => {
            let pid = o.pid.unwrap_or_default();
            if !tasks::pstree(&images)?.iter().any(|p| p.pid == pid) {
                return Err(ExploreError::NoTask {
                    pid,
                    file: images.label("pstree.img"),
                }
                .into());
            }
            let view = mem_view.unwrap_or(MemView::Summary);
            mem::run(&images, pid, &view, o.json, &mut out)?
        }
        _ => return Err(ExploreError::UnknownView(what.to_string()).into()),
    }
    out.finish()
}

/// A view of files needs `files.img` (or, in images older than it, one of
/// `old`): without any, every file would print as unknown.
pub(crate) fn files_image(dir: &Images, old: &[&str]) -> Result<()> {
    if dir.exists("files.img") || old.iter().any(|o| dir.exists(o)) {
        return Ok(());
    }
    Err(Error::io(
        dir.label("files.img").display().to_string(),
        std::io::Error::from_raw_os_error(libc::ENOENT),
    ))
}

/// Buffered stdout whose write errors come back as [`Error::Io`].
pub(crate) struct Out {
    w: BufWriter<StdoutLock<'static>>,
}

impl Out {
    fn new() -> Self {
        Out {
            w: BufWriter::with_capacity(1 << 16, std::io::stdout().lock()),
        }
    }

    /// Writes formatted text (use with `format_args!`).
    pub(crate) fn put(&mut self, args: std::fmt::Arguments<'_>) -> Result<()> {
        self.w.write_fmt(args).map_err(stdout_err)
    }

    /// Writes `s` as is.
    pub(crate) fn text(&mut self, s: &str) -> Result<()> {
        self.w.write_all(s.as_bytes()).map_err(stdout_err)
    }

    /// Writes one pretty-printed JSON document and a newline.
    pub(crate) fn json<T: serde::Serialize + ?Sized>(&mut self, v: &T) -> Result<()> {
        serde_json::to_writer_pretty(&mut self.w, v).map_err(|e| stdout_err(e.into()))?;
        self.text("\n")
    }

    fn finish(mut self) -> Result<()> {
        self.w.flush().map_err(stdout_err)
    }
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::io("stdout", e)
}

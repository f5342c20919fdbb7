//! `crit x DIR VIEW [--json]`: views over a whole images directory.
//!
//! * `ps`, `fds`, `mems`, `rss` print byte for byte what CRIU 4.2's Python
//!   `crit x` prints (see each module for the format).
//! * `sk` lists the unix sockets of the dump (no crit 4.2 equivalent).
//!
//! With `--json` every view prints the same information as one
//! pretty-printed JSON document instead; each module documents its shape.
//!
//! Text output is streamed through a buffered stdout; a reader that goes
//! away (EPIPE) surfaces as an I/O error that `main` treats as success.

mod fds;
mod files;
mod mems;
mod ps;
mod rss;
mod sk;
mod tasks;

use crate::error::{Error, Result};
use std::io::{BufWriter, StdoutLock, Write};
use std::path::Path;

/// Runs view `what` on the images in `dir`, printing to stdout.
pub fn run(dir: &Path, what: &str, json: bool) -> Result<()> {
    let mut out = Out::new();
    match what {
        "ps" => ps::run(dir, json, &mut out)?,
        "fds" => fds::run(dir, json, &mut out)?,
        "mems" => mems::run(dir, json, &mut out)?,
        "rss" => rss::run(dir, json, &mut out)?,
        "sk" => sk::run(dir, json, &mut out)?,
        _ => return Err(Error::UnknownView(what.to_string())),
    }
    out.finish()
}

/// A view of files needs `files.img` (or, in images older than it, one of
/// `old`): without any, every file would print as unknown.
pub(crate) fn files_image(dir: &Path, old: &[&str]) -> Result<()> {
    let files = dir.join("files.img");
    if files.exists() || old.iter().any(|o| dir.join(o).exists()) {
        return Ok(());
    }
    Err(Error::io(
        files.display().to_string(),
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

//! The image toolkit commands: decode, encode, show and info. They take
//! paths (or `-`/nothing for stdin and stdout) and do the I/O around the
//! transcoder in [`crate::json::image`].

use crate::error::{Error, Result};
use crate::image::archive::{self, Archive};
use crate::image::magic;
use crate::image::source::Source;
use crate::image::typed::{AtomicFile, Mapped};
use crate::json::image::{self as jimage, DecodeOpts};
use crate::json::reader::JsonReader;
use crate::json::writer::JsonWriter;
use std::io::Write;
use std::path::Path;

/// `None` or `-` means standard input/output.
fn named(p: Option<&str>) -> Option<&str> {
    p.filter(|p| *p != "-")
}

fn file_name(p: &str) -> &str {
    Path::new(p)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(p)
}

/// Refuses raw files (no magic) by name, with what they are.
fn refuse_raw(path: &str) -> Result<()> {
    if let Some(kind) = magic::raw_kind(file_name(path)) {
        return Err(Error::Images {
            file: path.into(),
            why: crate::error::ImagesFault::Raw(kind),
        });
    }
    Ok(())
}

/// Where output goes: stdout; a regular file, replaced atomically at the
/// end (through a symlink, its target); or, written into as it comes, a
/// device, FIFO or socket, or a file named through /proc or /dev/fd (such
/// as /dev/stdout), which must stay the file it is.
enum Out {
    Stdout(std::io::StdoutLock<'static>),
    File(AtomicFile),
    Direct(std::fs::File),
}

/// Whether `path` is written into rather than replaced.
fn write_in_place(path: &Path) -> bool {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
        return true;
    }
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        if p.starts_with("/proc") || p.starts_with("/dev/fd") {
            return true;
        }
        match std::fs::read_link(&p) {
            Ok(t) => p = p.parent().map_or(t.clone(), |d| d.join(&t)),
            Err(_) => return false,
        }
    }
    false
}

impl Out {
    fn open(p: Option<&str>) -> Result<Out> {
        Ok(match named(p) {
            None => Out::Stdout(std::io::stdout().lock()),
            Some(path) if write_in_place(Path::new(path)) => Out::Direct(
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|e| Error::io(path, e))?,
            ),
            Some(path) => Out::File(AtomicFile::create(Path::new(path))?),
        })
    }

    fn finish(self) -> Result<()> {
        match self {
            Out::Stdout(mut s) => s.flush().map_err(stdout_err),
            Out::File(f) => f.commit(),
            Out::Direct(mut f) => f.flush().map_err(|e| Error::io("output", e)),
        }
    }
}

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Stdout(s) => s.write(b),
            Out::File(f) => f.write(b),
            Out::Direct(f) => f.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Stdout(s) => s.flush(),
            Out::File(f) => f.flush(),
            Out::Direct(f) => f.flush(),
        }
    }
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::io("stdout", e)
}

/// `ARCHIVE:MEMBER` (`dump.tar.zst:checkpoint/files.img`): an image
/// inside a checkpoint archive, when no file has the whole name.
fn archive_member(p: &str) -> Option<(&str, &str)> {
    if Path::new(p).exists() {
        return None;
    }
    p.match_indices(':').find_map(|(i, _)| {
        let (a, m) = (&p[..i], &p[i + 1..]);
        archive::is_archive(Path::new(a)).then_some((a, m))
    })
}

/// Runs `f` over the input as an image source.
fn with_source<T>(input: Option<&str>, f: impl FnOnce(&mut Source) -> Result<T>) -> Result<T> {
    match named(input) {
        Some(p) if archive_member(p).is_some() => {
            let (a, m) = archive_member(p).expect("checked");
            let blob = Archive::open(Path::new(a))?.bytes(m)?;
            let mut src = blob.source();
            f(&mut src)
        }
        Some(path) => {
            let m = Mapped::open_any(Path::new(path))?;
            let mut src = m.source();
            f(&mut src)
        }
        None => {
            let stdin = std::io::stdin().lock();
            let mut src = Source::from_reader("<stdin>", stdin);
            f(&mut src)
        }
    }
}

/// `crit decode` and `crit show`.
pub fn decode(input: Option<&str>, output: Option<&str>, opts: DecodeOpts) -> Result<()> {
    if let Some(p) = named(input) {
        refuse_raw(p)?;
    }
    let out = Out::open(output)?;
    let to_stdout = matches!(out, Out::Stdout(_));
    let mut w = JsonWriter::new(out, opts.pretty);
    with_source(input, |src| jimage::decode(src, &mut w, opts))?;
    // crit ends stdout with a newline, files without.
    if to_stdout {
        w.raw(b"\n");
    }
    let out = w.finish().map_err(stdout_err)?;
    out.finish()
}

/// `crit encode`.
pub fn encode(input: Option<&str>, output: Option<&str>) -> Result<()> {
    let mut out = Out::open(output)?;
    let name = named(input).unwrap_or("<stdin>").to_string();
    {
        let mut bw = std::io::BufWriter::with_capacity(1 << 16, &mut out);
        match named(input) {
            Some(path) => {
                let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let mut r = JsonReader::new(f);
                jimage::encode(&mut r, &name, &mut bw)?;
            }
            None => {
                let mut r = JsonReader::new(std::io::stdin().lock());
                jimage::encode(&mut r, &name, &mut bw)?;
            }
        }
        bw.flush().map_err(stdout_err)?;
    }
    out.finish()
}

/// `crit info`: magic and entry count, or what a raw file is.
pub fn info(input: &str) -> Result<()> {
    let mut s = String::new();
    if let (Some(kind), Some(_)) = (magic::raw_kind(file_name(input)), named(Some(input))) {
        let size = match archive_member(input) {
            Some((a, m)) => {
                let ar = Archive::open(Path::new(a))?;
                ar.member(m).map(|m| m.size).ok_or_else(|| Error::Archive {
                    path: a.into(),
                    why: archive::ArchiveFault::NoMember(m.to_string()),
                })?
            }
            None => std::fs::metadata(input)
                .map_err(|e| Error::io(input, e))?
                .len(),
        };
        let mut w = JsonWriter::new(Vec::new(), true);
        w.begin_object();
        w.key("magic");
        w.str(b"RAW");
        w.key("holds");
        w.str(kind.as_bytes());
        w.key("size");
        w.u64(size);
        w.end_object();
        s.push_str(&String::from_utf8_lossy(&w.finish().map_err(stdout_err)?));
    } else {
        let (mg, n) = with_source(Some(input), jimage::count)?;
        let mut w = JsonWriter::new(Vec::new(), true);
        w.begin_object();
        w.key("magic");
        w.str(mg.name.as_bytes());
        w.key("count");
        w.u64(n);
        w.end_object();
        s.push_str(&String::from_utf8_lossy(&w.finish().map_err(stdout_err)?));
    }
    s.push('\n');
    let mut o = std::io::stdout().lock();
    o.write_all(s.as_bytes()).map_err(stdout_err)?;
    o.flush().map_err(stdout_err)
}

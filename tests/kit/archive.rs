//! Checkpoint archives for the explore tests: an images dir packed as
//! podman packs one (`checkpoint/` plus files beside it), as a tar, a
//! tar.gz or a tar.zst, built in memory with the tar, flate2 and zstd
//! crates (no tar or zstd binary needed).

use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug)]
pub enum Codec {
    Tar,
    Gzip,
    Zstd,
}

pub const CODECS: [Codec; 3] = [Codec::Tar, Codec::Gzip, Codec::Zstd];

impl Codec {
    pub fn ext(self) -> &'static str {
        match self {
            Codec::Tar => "tar",
            Codec::Gzip => "tar.gz",
            Codec::Zstd => "tar.zst",
        }
    }
}

/// A tar builder writing into memory.
pub struct Pack {
    b: tar::Builder<Vec<u8>>,
}

impl Pack {
    pub fn new() -> Pack {
        Pack {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// The files of `dir` (not its subfolders) under folder `to` (`""` or
    /// ending in `/`).
    pub fn dir(mut self, dir: &Path, to: &str) -> Pack {
        if !to.is_empty() {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o700);
            h.set_size(0);
            self.b.append_data(&mut h, to, std::io::empty()).unwrap();
        }
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .collect();
        names.sort();
        for p in names {
            let name = format!("{to}{}", p.file_name().unwrap().to_str().unwrap());
            self.b.append_path_with_name(&p, name).unwrap();
        }
        self
    }

    pub fn file(mut self, name: &str, data: &[u8]) -> Pack {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(1_764_744_793);
        self.b.append_data(&mut h, name, data).unwrap();
        self
    }

    pub fn symlink(mut self, name: &str, to: &str) -> Pack {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        self.b.append_link(&mut h, name, to).unwrap();
        self
    }

    /// Writes the archive, compressed with `codec`, to `path`.
    pub fn write(self, codec: Codec, path: &Path) -> PathBuf {
        let tar = self.b.into_inner().unwrap();
        let data = match codec {
            Codec::Tar => tar,
            Codec::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(&tar).unwrap();
                e.finish().unwrap()
            }
            Codec::Zstd => zstd::encode_all(&tar[..], 1).unwrap(),
        };
        std::fs::write(path, data).unwrap();
        path.to_path_buf()
    }
}

/// `dir` packed as podman does, with a config.dump naming the container.
pub fn podman_like(dir: &Path, codec: Codec, out: &Path) -> PathBuf {
    Pack::new()
        .file("config.dump", br#"{"id":"0123abcd","name":"made-up","rootfsImageName":"localhost/test:1","runtime":"runc","createdTime":"2026-12-03T06:13:10Z"}"#)
        .file("spec.dump", br#"{"annotations":{"io.container.manager":"libpod"},"process":{"args":["/bin/sh","-c","loop"]},"hostname":"box"}"#)
        .dir(dir, "checkpoint/")
        .write(codec, out)
}

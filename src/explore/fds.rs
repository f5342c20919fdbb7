//! `crit x DIR fds`: each process's open files, cwd and root.
//!
//! Text (crit 4.2, byte for byte): for every `pstree.img` entry, its pid,
//! then one line per descriptor of its `fdinfo-ID.img` (`"\t%7d: %s"`),
//! then its cwd and root (`"\t%7s: %s"`):
//!
//! ```text
//! 26773
//! <TAB>      0: /dev/null
//! <TAB>      3: pipe[306548]
//! <TAB>     18: unix[306552 (306553)]
//! <TAB>    cwd: /tmp/scen
//! <TAB>   root: /
//! ```
//!
//! The file strings are those of [`super::files`].
//!
//! JSON: an array with one object per process:
//! `{"pid": N, "fds": [{"fd": N, "type": "REG", "id": N, "file": "…"}, …],
//! "cwd": "…", "root": "…"}`, where `type` is the `fd_types` name (or the
//! number if unknown), `id` the file id and `file` the text view's string.

use super::files::Files;
use super::tasks::{fd_type_json, fdinfo, files_id, pstree};
use super::Out;
use crate::error::Result;
use crate::image::pb;
use crate::image::store::Images;
use serde::Serialize;

#[derive(Serialize)]
struct ProcJson {
    pid: u32,
    fds: Vec<FdJson>,
    cwd: String,
    root: String,
}

#[derive(Serialize)]
struct FdJson {
    fd: u32,
    #[serde(rename = "type")]
    ftype: serde_json::Value,
    id: u32,
    file: String,
}

pub fn run(dir: &Images, json: bool, out: &mut Out) -> Result<()> {
    let mut files = Files::new(dir);
    let mut list = Vec::new();
    let tree = pstree(dir)?;
    super::files_image(dir, &["reg-files.img", "pipes.img", "unixsk.img"])?;
    for p in tree {
        let pid = p.pid;
        let fds = fdinfo(dir, files_id(dir, pid)?)?;
        let mut jfds = Vec::new();
        if !json {
            out.put(format_args!("{pid}\n"))?;
        }
        for fd in &fds {
            let s = files.describe(fd.r#type, u64::from(fd.id))?;
            if json {
                jfds.push(FdJson {
                    fd: fd.fd,
                    ftype: fd_type_json(fd.r#type),
                    id: fd.id,
                    file: s,
                });
            } else {
                out.put(format_args!("\t{:>7}: {}\n", fd.fd, s))?;
            }
        }
        let fs = dir.read_one::<pb::FsEntry>(&format!("fs-{pid}.img"), "FS")?;
        let cwd = files.reg(u64::from(fs.cwd_id))?;
        let root = files.reg(u64::from(fs.root_id))?;
        if json {
            list.push(ProcJson {
                pid,
                fds: jfds,
                cwd,
                root,
            });
        } else {
            out.put(format_args!("\t{:>7}: {}\n", "cwd", cwd))?;
            out.put(format_args!("\t{:>7}: {}\n", "root", root))?;
        }
    }
    if json {
        out.json(&list)?;
    }
    Ok(())
}

//! `crit x DIR rss`: which vmas each run of dumped pages falls in.
//!
//! Text (crit 4.2, byte for byte, odd continuation lines included): for
//! every `pstree.img` entry, its pid, then for every `pagemap-PID.img`
//! entry after the head one line `"%-24s%s"` of the run
//! (`"\t%lx / %-8d"`: address, page count) followed by, for each vma the
//! run overlaps, ` %08lx / %-8d` (vma start, page count) plus ` PATH` for
//! file mappings — or ` ~` when it is the vma already shown for the
//! previous run — each followed by a newline, a tab and 23 spaces:
//!
//! ```text
//! 26773
//! <TAB>564896bd2000 / 2        564896bd2000 / 1        /tmp/scen/bin/kitchen
//! <TAB>                        564896bd3000 / 1        /tmp/scen/bin/kitchen
//! <TAB>                       
//! <TAB>7f9d116b3000 / 3        ~
//! <TAB>                       
//! ```
//!
//! The vma walk is crit's, Python's negative list indexes included (a run
//! that overlaps no vma makes the next search start from the last vma);
//! where crit 4.2 would fail with an IndexError this is an error.
//!
//! JSON: an array with one object per process,
//! `{"pid": N, "pages": [RUN, …]}`, each RUN
//! `{"vaddr": "0x…", "nr_pages": N, "vmas": [VMA, …]}` and each VMA
//! `{"start": "0x…", "pages": N, "file": "…" (file mappings only),
//! "repeat": BOOL}` (`repeat`: shown as `~` in the text view).

use super::files::Files;
use super::tasks::pstree;
use super::Out;
use crate::error::{Error, Result};
use crate::image::flags::{VMA_FILE_PRIVATE, VMA_FILE_SHARED};
use crate::image::pb;
use crate::image::store::Images;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Write as _;

#[derive(Serialize)]
struct ProcJson {
    pid: u32,
    pages: Vec<RunJson>,
}

#[derive(Serialize)]
struct RunJson {
    vaddr: String,
    nr_pages: u64,
    vmas: Vec<HitJson>,
}

#[derive(Serialize)]
struct HitJson {
    start: String,
    pages: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<String>,
    repeat: bool,
}

/// One vma a run of pages overlaps.
struct Hit {
    start: u64,
    pages: i128,
    file: Option<String>,
    repeat: bool,
}

pub fn run(dir: &Images, json: bool, out: &mut Out) -> Result<()> {
    let mut files = Files::new(dir);
    let mut list = Vec::new();
    for p in pstree(dir)? {
        let pid = p.pid;
        let mm_name = format!("mm-{pid}.img");
        let vmas = dir.read_one::<pb::MmEntry>(&mm_name, "MM")?.vmas;
        let mm_path = dir.label(&mm_name);
        let pm_name = format!("pagemap-{pid}.img");
        let pms = dir.read_all::<pb::PagemapEntry>(&pm_name, "PAGEMAP")?;
        let pm_path = dir.label(&pm_name);
        if !json {
            out.put(format_args!("{pid}\n"))?;
        }
        let mut walk = Walk {
            vmas: &vmas,
            vmi: 0,
            pvmi: -1,
            mismatch: || Error::Images {
                file: pm_path.clone(),
                why: crate::error::ImagesFault::PagesMismatch(mm_path.clone()),
            },
        };
        let mut runs = Vec::new();
        for pm in pms.iter().skip(1) {
            let nr = pm.nr_pages.unwrap_or(u64::from(pm.compat_nr_pages));
            let hits = walk.hits(pm.vaddr, nr, &mut files)?;
            if json {
                runs.push(run_json(pm.vaddr, nr, hits));
            } else {
                out.put(format_args!("{}\n", run_text(pm.vaddr, nr, hits)))?;
            }
        }
        if json {
            list.push(ProcJson { pid, pages: runs });
        }
    }
    if json {
        out.json(&list)?;
    }
    Ok(())
}

/// crit 4.2's walk over a task's vmas along its pagemap entries.
struct Walk<'a, E: Fn() -> Error> {
    vmas: &'a [pb::VmaEntry],
    vmi: i64,
    pvmi: i64,
    mismatch: E,
}

impl<E: Fn() -> Error> Walk<'_, E> {
    /// Python's `vmas[i]`: negative indexes count from the end.
    fn at(&self, i: i64) -> Result<&pb::VmaEntry> {
        let n = self.vmas.len() as i64;
        let idx = if i < 0 { i + n } else { i };
        usize::try_from(idx)
            .ok()
            .and_then(|k| self.vmas.get(k))
            .ok_or_else(&self.mismatch)
    }

    /// The vmas the run of `nr` pages at `vaddr` overlaps.
    fn hits(&mut self, vaddr: u64, nr: u64, files: &mut Files) -> Result<Vec<Hit>> {
        let n = self.vmas.len() as i64;
        while self.vmi < n && self.at(self.vmi)?.end <= vaddr {
            self.vmi += 1;
        }
        let pme = u128::from(vaddr) + (u128::from(nr) << 12);
        let mut hits = Vec::new();
        while self.vmi < n && u128::from(self.at(self.vmi)?.start) < pme {
            let vma = self.at(self.vmi)?;
            let pages = (i128::from(vma.end) - i128::from(vma.start)) >> 12;
            let repeat = self.vmi == self.pvmi;
            let file = if vma.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0 {
                Some(files.reg(vma.shmid)?)
            } else {
                None
            };
            hits.push(Hit {
                start: vma.start,
                pages,
                file,
                repeat,
            });
            if !repeat {
                self.pvmi = self.vmi;
            }
            self.vmi += 1;
        }
        self.vmi -= 1;
        Ok(hits)
    }
}

fn run_json(vaddr: u64, nr: u64, hits: Vec<Hit>) -> RunJson {
    RunJson {
        vaddr: format!("{vaddr:#x}"),
        nr_pages: nr,
        vmas: hits
            .into_iter()
            .map(|h| HitJson {
                start: format!("{:#x}", h.start),
                pages: json_int(h.pages),
                file: h.file,
                repeat: h.repeat,
            })
            .collect(),
    }
}

/// One pagemap run as crit 4.2 prints it (without the final newline).
fn run_text(vaddr: u64, nr: u64, hits: Vec<Hit>) -> String {
    let pstr = format!("\t{vaddr:x} / {nr:<8}");
    let mut vstr = String::new();
    for h in hits {
        if h.repeat {
            vstr.push_str(" ~");
        } else {
            let _ = write!(vstr, " {:08x} / {:<8}", h.start, h.pages);
            if let Some(f) = h.file {
                vstr.push(' ');
                vstr.push_str(&f);
            }
        }
        vstr.push_str("\n\t                       ");
    }
    format!("{pstr:<24}{vstr}")
}

/// An integer that may not fit 64 bits, as a JSON number when it does.
fn json_int(v: i128) -> Value {
    if let Ok(x) = i64::try_from(v) {
        x.into()
    } else {
        v.to_string().into()
    }
}

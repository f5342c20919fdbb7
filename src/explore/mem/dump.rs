//! `x mem --addr A --len N`: bytes of a task's memory as `hexdump -C`
//! prints them (offset, 16 bytes in two groups of 8, `|text|`), with
//! runs of equal lines folded into one `*`. A range the images do not
//! hold is one line: `START-END  (WHAT)`.

use super::layout::{Place, TaskMemory};
use super::Out;
use crate::error::Result;
use serde_json::json;

const CHUNK: u64 = 1 << 20;

pub fn run(mem: &mut TaskMemory, addr: u64, len: u64, json: bool, out: &mut Out) -> Result<()> {
    let end = addr.saturating_add(len);
    let pieces = mem.pieces(addr, end);
    let mut jpieces = Vec::new();
    let mut lines = Lines::default();
    for p in pieces {
        let bytes = matches!(p.place, Place::Bytes { .. } | Place::Zero);
        if !bytes {
            lines.flush(out)?;
            if json {
                jpieces.push(json!({
                    "start": format!("{:#x}", p.start),
                    "end": format!("{:#x}", p.end),
                    "held": p.place.word(),
                }));
            } else {
                out.put(format_args!(
                    "{:016x}-{:016x}  ({})\n",
                    p.start,
                    p.end,
                    describe(p.place)
                ))?;
            }
            continue;
        }
        let mut hex = String::new();
        let mut at = p.start;
        let mut buf = Vec::new();
        while at < p.end {
            let n = (p.end - at).min(CHUNK) as usize;
            buf.clear();
            buf.resize(n, 0);
            if let Place::Bytes { level, off } = p.place {
                let got = mem.levels[level].read_at(off + (at - p.start), &mut buf)?;
                // Short pages image: what it lacks is not there.
                if got < n {
                    lines.flush(out)?;
                    let lost = at + got as u64;
                    buf.truncate(got);
                    if json {
                        hex.push_str(&to_hex(&buf));
                    } else {
                        lines.add(at, &buf, out)?;
                        lines.flush(out)?;
                        out.put(format_args!(
                            "{lost:016x}-{:016x}  (cut short: the pages image ends)\n",
                            p.end
                        ))?;
                    }
                    break;
                }
            }
            if json {
                hex.push_str(&to_hex(&buf));
            } else {
                lines.add(at, &buf, out)?;
            }
            at += n as u64;
        }
        if json {
            jpieces.push(json!({
                "start": format!("{:#x}", p.start),
                "end": format!("{:#x}", p.end),
                "held": p.place.word(),
                "hex": hex,
            }));
        }
    }
    if json {
        return out.json(&json!({
            "pid": mem.pid,
            "address": format!("{addr:#x}"),
            "length": len,
            "pieces": jpieces,
        }));
    }
    lines.flush(out)?;
    Ok(())
}

fn describe(p: Place) -> &'static str {
    match p {
        Place::File => "not in the images: the mapped file holds it",
        Place::Kernel => "not in the images: the kernel provides it",
        Place::Lazy => "not in the images: lazy pages, served by a page server",
        Place::NoParent => "in a parent dump that is not there",
        Place::Cut => "not in the images: the pagemap places it past the end of its pages image",
        Place::Unmapped => "not mapped",
        Place::Bytes { .. } | Place::Zero => "held",
    }
}

fn to_hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// hexdump -C lines, folding repeats.
#[derive(Default)]
struct Lines {
    /// A partial line: its address and bytes.
    part: Option<(u64, Vec<u8>)>,
    last: Option<[u8; 16]>,
    folded: bool,
    /// The address after the last byte added.
    next: u64,
}

impl Lines {
    fn add(&mut self, mut at: u64, mut b: &[u8], out: &mut Out) -> Result<()> {
        self.next = at + b.len() as u64;
        while !b.is_empty() {
            let (start, mut cur) = match self.part.take() {
                Some((s, c)) if s + c.len() as u64 == at => (s, c),
                Some((s, c)) => {
                    self.line(s, &c, out)?;
                    (at, Vec::with_capacity(16))
                }
                None => (at, Vec::with_capacity(16)),
            };
            let n = (16 - cur.len()).min(b.len());
            cur.extend_from_slice(&b[..n]);
            b = &b[n..];
            at += n as u64;
            if cur.len() == 16 {
                self.line(start, &cur, out)?;
            } else {
                self.part = Some((start, cur));
            }
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut Out) -> Result<()> {
        if let Some((s, c)) = self.part.take() {
            self.line(s, &c, out)?;
        }
        // Like hexdump, end folded lines with the address they run to.
        if self.folded {
            out.put(format_args!("{:016x}\n", self.next))?;
        }
        self.last = None;
        self.folded = false;
        Ok(())
    }

    fn line(&mut self, at: u64, b: &[u8], out: &mut Out) -> Result<()> {
        if b.len() == 16 {
            let a: [u8; 16] = b.try_into().expect("16 bytes");
            if self.last == Some(a) {
                if !self.folded {
                    self.folded = true;
                    out.text("*\n")?;
                }
                return Ok(());
            }
            self.last = Some(a);
        } else {
            self.last = None;
        }
        self.folded = false;
        let mut s = format!("{at:016x} ");
        for i in 0..16 {
            if i == 8 {
                s.push(' ');
            }
            match b.get(i) {
                Some(x) => s.push_str(&format!(" {x:02x}")),
                None => s.push_str("   "),
            }
        }
        s.push_str("  |");
        s.extend(b.iter().map(|&x| {
            if (0x20..0x7f).contains(&x) {
                x as char
            } else {
                '.'
            }
        }));
        s.push_str("|\n");
        out.text(&s)
    }
}

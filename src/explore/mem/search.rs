//! `x mem --search`: every match of a byte string in the pages the images
//! hold, in address order. Chunks of 1 MiB are searched with memchr's
//! memmem; the last `len - 1` bytes of a chunk are kept and searched
//! again with the next one when it continues at the next address, so a
//! match across pages, runs or adjacent mappings is found once.

use super::layout::{Place, TaskMemory};
use super::Out;
use crate::error::Result;
use serde_json::json;

const CHUNK: usize = 1 << 20;

/// Calls `found(address)` for every match, in address order.
pub fn each_match(
    mem: &mut TaskMemory,
    needle: &[u8],
    mut found: impl FnMut(&TaskMemory, u64) -> Result<()>,
) -> Result<()> {
    if needle.is_empty() {
        return Ok(());
    }
    let finder = memchr::memmem::Finder::new(needle);
    let keep = needle.len() - 1;
    let mut buf = vec![0u8; CHUNK + keep];
    // `buf[..carry]` holds the bytes before `carry_end`.
    let mut carry = 0usize;
    let mut carry_end = 0u64;
    let pieces: Vec<_> = (0..mem.mappings.len())
        .flat_map(|i| mem.pieces_of(i))
        .collect();
    for p in pieces {
        let Place::Bytes { level, off } = p.place else {
            carry = 0;
            continue;
        };
        if p.start != carry_end {
            carry = 0;
        }
        let mut at = p.start;
        while at < p.end {
            let want = ((p.end - at) as usize).min(CHUNK);
            let n =
                mem.levels[level].read_at(off + (at - p.start), &mut buf[carry..carry + want])?;
            let window = carry + n;
            let base = at - carry as u64;
            for pos in finder.find_iter(&buf[..window]) {
                found(mem, base + pos as u64)?;
            }
            if n < want {
                // The pages image ends early: what it lacks is not there.
                carry = 0;
                break;
            }
            at += n as u64;
            let k = keep.min(window);
            buf.copy_within(window - k..window, 0);
            carry = k;
            carry_end = at;
        }
    }
    Ok(())
}

pub fn run(mem: &mut TaskMemory, needle: &[u8], json: bool, out: &mut Out) -> Result<()> {
    let mut count = 0u64;
    if json {
        // Streamed, match by match, as the text is: a list held until the
        // end grew with the matches (a byte searched for in a GiB of
        // pages took tens of GB). So `count` comes after `matches`.
        out.put(format_args!(
            "{{\n  \"pid\": {},\n  \"pattern\": \"{}\",\n  \"matches\": [",
            mem.pid,
            hex(needle)
        ))?;
    }
    each_match(mem, needle, |mem, addr| {
        count += 1;
        let m = mem.mapping_at(addr).map(|i| &mem.mappings[i]);
        if json {
            let one = json!({
                "address": format!("{addr:#x}"),
                "mapping": m.map(|m| json!({
                    "start": format!("{:#x}", m.start),
                    "end": format!("{:#x}", m.end),
                    "prot": m.prot,
                    "what": m.what,
                })),
            });
            let text = serde_json::to_string_pretty(&one).unwrap_or_default();
            out.text(if count == 1 { "\n" } else { ",\n" })?;
            for (i, line) in text.lines().enumerate() {
                if i > 0 {
                    out.text("\n")?;
                }
                out.text("    ")?;
                out.text(line)?;
            }
            return Ok(());
        }
        match m {
            Some(m) => out.put(format_args!(
                "{addr:#x}  in {:x}-{:x} {} {}\n",
                m.start, m.end, m.prot, m.what
            )),
            None => out.put(format_args!("{addr:#x}\n")),
        }
    })?;
    if json {
        if count > 0 {
            out.text("\n  ")?;
        }
        return out.put(format_args!("],\n  \"count\": {count}\n}}\n"));
    }
    out.put(format_args!("{count} matches\n"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

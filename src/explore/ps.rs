//! `crit x DIR ps`: the process tree.
//!
//! Text (crit 4.2, byte for byte): a header, then one line per process in
//! depth-first order from the root, children in `pstree.img` order, the
//! command indented by four spaces per level:
//!
//! ```text
//!     PID   PGID    SID   COMM
//!   26773  26773  26773   kitchen
//!   26777  26773  26773       kitchen
//! ```
//!
//! (`"%7d%7d%7d   %s%s"`.) As in crit 4.2 the root is the last entry with
//! ppid 0, a pid listed twice keeps its first place and its last entry,
//! and processes not reachable from the root are not shown. An entry whose
//! parent is not in `pstree.img`, or no root at all, is an error.
//!
//! JSON: an array of the same processes in the same order, each
//! `{"pid": N, "ppid": N, "pgid": N, "sid": N, "comm": "…", "depth": N,
//! "threads": [N, …]}`, where `depth` is the indentation level (0 for the
//! root); the tree is given by `ppid` and the order.

use super::dot::Dot;
use super::tasks::pstree;
use super::Out;
use crate::error::{Error, ImagesFault, Result};
use crate::image::pb;
use crate::image::store::Images;
use serde_json::json;
use std::collections::{HashMap, HashSet};

struct Proc {
    entry: pb::PstreeEntry,
    comm: String,
}

pub fn run(dir: &Images, json: bool, dot: bool, out: &mut Out) -> Result<()> {
    let entries = pstree(dir)?;
    // pid -> process, in the order pids were first seen (a Python dict).
    let mut order: Vec<u32> = Vec::new();
    let mut procs: HashMap<u32, Proc> = HashMap::new();
    for e in entries {
        let name = format!("core-{}.img", e.pid);
        let core = dir.read_one::<pb::CoreEntry>(&name, "CORE")?;
        let Some(comm) = core.tc.map(|tc| tc.comm) else {
            return Err(Error::Images {
                file: dir.label(&name),
                why: ImagesFault::NoTaskCore,
            });
        };
        if !procs.contains_key(&e.pid) {
            order.push(e.pid);
        }
        procs.insert(e.pid, Proc { entry: e, comm });
    }

    let mut root = None;
    let mut kids: HashMap<u32, Vec<u32>> = HashMap::new();
    for &pid in &order {
        let Some(p) = procs.get(&pid) else { continue };
        let ppid = p.entry.ppid;
        if ppid == 0 {
            root = Some(pid);
            continue;
        }
        if !procs.contains_key(&ppid) {
            return Err(Error::Images {
                file: dir.label("pstree.img"),
                why: ImagesFault::ParentMissing { pid, ppid },
            });
        }
        kids.entry(ppid).or_default().push(pid);
    }
    let Some(root) = root else {
        return Err(Error::Images {
            file: dir.label("pstree.img"),
            why: ImagesFault::NoRoot,
        });
    };

    // Depth-first walk without recursion; `seen` guards against loops.
    let mut walk: Vec<(u32, usize)> = Vec::new();
    let mut stack = vec![(root, 0usize)];
    let mut seen = HashSet::new();
    while let Some((pid, depth)) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        walk.push((pid, depth));
        if let Some(k) = kids.get(&pid) {
            stack.extend(k.iter().rev().map(|&c| (c, depth + 1)));
        }
    }

    if dot {
        return out.text(&to_dot(&walk, &procs));
    }
    if json {
        let mut list = Vec::with_capacity(walk.len());
        for &(pid, depth) in &walk {
            let Some(p) = procs.get(&pid) else { continue };
            list.push(json!({
                "pid": p.entry.pid,
                "ppid": p.entry.ppid,
                "pgid": p.entry.pgid,
                "sid": p.entry.sid,
                "comm": p.comm,
                "depth": depth,
                "threads": p.entry.threads,
            }));
        }
        return out.json(&serde_json::Value::Array(list));
    }

    out.put(format_args!(
        "{:>7}{:>7}{:>7}   {}\n",
        "PID", "PGID", "SID", "COMM"
    ))?;
    for &(pid, depth) in &walk {
        let Some(p) = procs.get(&pid) else { continue };
        out.put(format_args!(
            "{:>7}{:>7}{:>7}   {:indent$}{}\n",
            p.entry.pid,
            p.entry.pgid,
            p.entry.sid,
            "",
            p.comm,
            indent = 4 * depth
        ))?;
    }
    Ok(())
}

/// The tree as a Graphviz digraph: a box per process (pid, command, pgid,
/// sid, threads), an arrow from each parent to its children.
fn to_dot(walk: &[(u32, usize)], procs: &HashMap<u32, Proc>) -> String {
    let mut d = Dot::digraph("ps", "shape=box, fontname=monospace");
    for &(pid, _) in walk {
        let Some(p) = procs.get(&pid) else { continue };
        let mut label = format!(
            "{pid} {}\npgid {} sid {}",
            p.comm, p.entry.pgid, p.entry.sid
        );
        if p.entry.threads.len() > 1 {
            label.push_str(&format!("\n{} threads", p.entry.threads.len()));
        }
        d.node(&pid.to_string(), &label, "");
    }
    for &(pid, _) in walk {
        let Some(p) = procs.get(&pid) else { continue };
        if p.entry.ppid != 0 && procs.contains_key(&p.entry.ppid) {
            d.edge(&p.entry.ppid.to_string(), &pid.to_string(), None, "");
        }
    }
    d.finish()
}

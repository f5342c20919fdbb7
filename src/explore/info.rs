//! `crit x ARCHIVE info`: what a checkpoint is, from the files podman and
//! CRI-O put beside the images (`config.dump`, `spec.dump`,
//! `network.status`, `stats-dump`) and from the images themselves.
//!
//! Fields (text: one `name: value` line each, absent ones left out; JSON:
//! one object with the same names):
//!
//! | name | from |
//! | --- | --- |
//! | archive, format, archive_size | the archive file |
//! | container, id, image | config.dump `name`, `id`, `rootfsImageName` (or `rootfsImage`) |
//! | engine | spec.dump: `io.container.manager: libpod` is podman, an `io.kubernetes.cri-o.*` annotation CRI-O |
//! | runtime | config.dump `runtime` |
//! | created, checkpointed | config.dump `createdTime`, `checkpointedTime` (podman 4.3 writes none: then the time of the archive's `checkpoint/inventory.img`, marked so) |
//! | command, hostname | spec.dump `process.args`, `hostname` |
//! | network | network.status (podman) or spec.dump `io.kubernetes.cri-o.IP.N` |
//! | tasks, root | pstree.img, core of the root task |
//! | images_size, pages_size | the images (`pages-*.img` apart) |
//! | rootfs_diff_size, devshm_size | `rootfs-diff.tar`, `devshm-checkpoint.tar` |
//! | freezing_us, frozen_us, memdump_us, memwrite_us, pages_scanned, pages_written | stats-dump |
//!
//! An images directory gives the last groups only.

use super::tasks::pstree;
use super::Out;
use crate::error::Result;
use crate::image::archive::{Archive, Kind};
use crate::image::entry::EntryReader;
use crate::image::pb;
use crate::image::store::Images;
use serde_json::{Map, Value};

/// A member of the archive as JSON, if it is there and parses.
fn json_member(a: &Archive, name: &str) -> Option<Value> {
    let b = a.bytes(name).ok()?;
    serde_json::from_slice(b.bytes()).ok()
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() && !s.starts_with("0001-01-01") => Some(s.clone()),
        _ => None,
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (UTC).
fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

pub fn run(images: &Images, json: bool, out: &mut Out) -> Result<()> {
    let mut f: Vec<(&'static str, Value)> = Vec::new();
    if let Some(a) = images.archive() {
        archive_fields(a, &mut f);
    }
    image_fields(images, &mut f)?;
    if json {
        let m: Map<String, Value> = f.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        return out.json(&Value::Object(m));
    }
    for (k, v) in f {
        let s = match v {
            Value::String(s) => s,
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join(", "),
            other => other.to_string(),
        };
        out.put(format_args!("{:<17} {s}\n", format!("{k}:")))?;
    }
    Ok(())
}

fn archive_fields(a: &Archive, f: &mut Vec<(&'static str, Value)>) {
    f.push(("archive", a.path.display().to_string().into()));
    f.push(("format", a.codec.name().into()));
    f.push(("archive_size", a.file_size.into()));
    let config = json_member(a, "config.dump");
    let spec = json_member(a, "spec.dump");
    let c = |k: &str| config.as_ref().and_then(|c| text(c.get(k)));
    if let Some(v) = c("name") {
        f.push(("container", v.into()));
    }
    if let Some(v) = c("id") {
        f.push(("id", v.into()));
    }
    if let Some(v) = c("rootfsImageName").or_else(|| c("rootfsImage")) {
        f.push(("image", v.into()));
    }
    let ann = spec
        .as_ref()
        .and_then(|s| s.get("annotations"))
        .and_then(Value::as_object);
    let engine = ann.and_then(|a| {
        if a.get("io.container.manager").and_then(Value::as_str) == Some("libpod") {
            Some("podman")
        } else if a.keys().any(|k| k.starts_with("io.kubernetes.cri-o.")) {
            Some("CRI-O")
        } else {
            None
        }
    });
    if let Some(e) = engine {
        f.push(("engine", e.into()));
    }
    if let Some(v) = c("runtime") {
        f.push(("runtime", v.into()));
    }
    if let Some(v) = c("createdTime") {
        f.push(("created", v.into()));
    }
    match c("checkpointedTime") {
        Some(v) => f.push(("checkpointed", v.into())),
        None => {
            if let Some(m) = a.member("checkpoint/inventory.img").filter(|m| m.mtime > 0) {
                f.push((
                    "checkpointed",
                    format!("{} (time of checkpoint/inventory.img)", utc(m.mtime)).into(),
                ));
            }
        }
    }
    if let Some(args) = spec
        .as_ref()
        .and_then(|s| s.pointer("/process/args"))
        .and_then(Value::as_array)
    {
        let words: Vec<&str> = args.iter().filter_map(Value::as_str).collect();
        f.push(("command", words.join(" ").into()));
    }
    if let Some(h) = spec.as_ref().and_then(|s| text(s.get("hostname"))) {
        f.push(("hostname", h.into()));
    }
    let mut net = Vec::new();
    if let Some(ifs) = json_member(a, "network.status")
        .as_ref()
        .and_then(|n| n.as_object())
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(|n| n.get("interfaces").and_then(Value::as_object))
        .next()
    {
        for (name, i) in ifs {
            let mut s = name.clone();
            for sub in i
                .get("subnets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(ip) = sub.get("ipnet").and_then(Value::as_str) {
                    s.push(' ');
                    s.push_str(ip);
                }
            }
            if let Some(mac) = i.get("mac_address").and_then(Value::as_str) {
                s.push_str(&format!(" mac {mac}"));
            }
            net.push(Value::from(s));
        }
    }
    if let Some(a) = ann {
        let mut ips: Vec<_> = a
            .iter()
            .filter(|(k, _)| k.starts_with("io.kubernetes.cri-o.IP."))
            .filter_map(|(_, v)| v.as_str())
            .map(Value::from)
            .collect();
        net.append(&mut ips);
    }
    if !net.is_empty() {
        f.push(("network", Value::Array(net)));
    }
    for (key, name) in [
        ("rootfs_diff_size", "rootfs-diff.tar"),
        ("devshm_size", "devshm-checkpoint.tar"),
    ] {
        if let Some(m) = a.member(name).filter(|m| m.kind == Kind::File) {
            f.push((key, m.size.into()));
        }
    }
}

fn image_fields(images: &Images, f: &mut Vec<(&'static str, Value)>) -> Result<()> {
    if images.exists("pstree.img") {
        let tree = pstree(images)?;
        f.push(("tasks", tree.len().into()));
        if let Some(root) = tree.iter().find(|p| p.ppid == 0) {
            let core =
                images.read_one::<pb::CoreEntry>(&format!("core-{}.img", root.pid), "CORE")?;
            let comm = core.tc.map(|t| t.comm).unwrap_or_default();
            f.push(("root", format!("pid {} ({comm})", root.pid).into()));
        }
    }
    let (mut all, mut pages) = (0u64, 0u64);
    for (name, size) in images.files()? {
        all += size;
        if name.starts_with("pages-") {
            pages += size;
        }
    }
    f.push(("images_size", all.into()));
    f.push(("pages_size", pages.into()));
    // CRIU writes stats-dump into the images; podman moves it beside them.
    let stats = if images.exists("stats-dump") {
        Some(images.bytes("stats-dump")?)
    } else {
        match images.archive() {
            Some(a) if a.member("stats-dump").is_some() => Some(a.bytes("stats-dump")?),
            _ => None,
        }
    };
    if let Some(blob) = stats {
        let mut src = blob.source();
        let mut rd = EntryReader::expect(&mut src, "STATS")?;
        if let Some(e) = rd.next_entry()? {
            let st: pb::StatsEntry = e.decode()?;
            if let Some(d) = st.dump {
                f.push(("freezing_us", d.freezing_time.into()));
                f.push(("frozen_us", d.frozen_time.into()));
                f.push(("memdump_us", d.memdump_time.into()));
                f.push(("memwrite_us", d.memwrite_time.into()));
                f.push(("pages_scanned", d.pages_scanned.into()));
                f.push(("pages_written", d.pages_written.into()));
            }
        }
    }
    Ok(())
}

//! Whether this CPU can hold the tree's state, checked before any task is
//! created (the rules are in [`crate::model::cpu`]).

use super::plan::Plan;
use super::Log;
use crate::error::{Error, Result};
use crate::image::pb;
use crate::model::cpu::{self as m, CpuCaps};
use crate::sys::cpu;

pub fn check(plan: &Plan, caps: CpuCaps, log: &Log) -> Result<()> {
    let rt = cpu::this_cpu();
    if caps.has(CpuCaps::IMAGE) {
        check_image(plan, &rt, caps)?;
    }
    let have = cpu::enabled_xfeatures();
    for t in plan.live() {
        for th in &t.threads {
            let Some(f) = th.core.thread_info.as_ref().map(|ti| &ti.fpregs) else {
                continue;
            };
            let lost = m::lost_components(f, have);
            if !lost.is_empty() {
                let what = lost.join(", ");
                if caps.has(CpuCaps::FPU) {
                    return Err(Error::msg(format!(
                        "tid {}: it was using {what} state, which this CPU lacks \
                         (restore with --cpu-cap=none to drop it)",
                        th.tid
                    )));
                }
                log.warn(format!(
                    "tid {}: its {what} state is dropped (this CPU lacks it)",
                    th.tid
                ));
            }
            if m::shadow_stack_on(f) {
                log.warn(format!(
                    "tid {}: its CET shadow stack was on at dump and is restored off",
                    th.tid
                ));
            }
        }
    }
    Ok(())
}

/// `--cpu-cap`: the dumped CPU from `cpuinfo.img` against this one.
fn check_image(plan: &Plan, rt: &cpu::CpuInfo, caps: CpuCaps) -> Result<()> {
    let path = plan.dir.join("cpuinfo.img");
    if !path.exists() {
        return Err(Error::msg(format!(
            "{}: missing; --cpu-cap needs images dumped with --cpu-cap",
            path.display()
        )));
    }
    let e: pb::CpuinfoEntry = crate::image::typed::read_one(&path, "CPUINFO")?;
    let img = m::from_image(&e, rt).map_err(|w| Error::msg(format!("{}: {w}", path.display())))?;
    let missing = m::check_cpuinfo(&img, rt, caps);
    if !missing.is_empty() {
        return Err(Error::msg(format!(
            "{}: the dump's CPU ({}) had what this one lacks: {}",
            path.display(),
            if img.model_id.is_empty() {
                "unnamed"
            } else {
                &img.model_id
            },
            missing.join("; ")
        )));
    }
    Ok(())
}

//! Whether this CPU can hold the tree's state, checked before any task is
//! created (the rules are in [`crate::model::cpu`]).

use super::error::{SetupError, TaskError};
use super::plan::Plan;
use super::Log;
use crate::error::Result;
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
                if caps.has(CpuCaps::FPU) {
                    return Err(TaskError::CpuLacks { tid: th.tid, lost }.into());
                }
                log.warn(format!(
                    "tid {}: its {} state is dropped (this CPU lacks it)",
                    th.tid,
                    lost.join(", ")
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
        return Err(SetupError::NoCpuinfo { path }.into());
    }
    let e: pb::CpuinfoEntry = crate::image::typed::read_one(&path, "CPUINFO")?;
    let img = match m::from_image(&e, rt) {
        Ok(img) => img,
        Err(why) => return Err(SetupError::Cpuinfo { path, why }.into()),
    };
    let missing = m::check_cpuinfo(&img, rt, caps);
    if !missing.is_empty() {
        let model = if img.model_id.is_empty() {
            "unnamed".to_string()
        } else {
            img.model_id
        };
        return Err(SetupError::CpuDiffers {
            path,
            model,
            missing,
        }
        .into());
    }
    Ok(())
}

//! Per-task images shared by the views: the process list (`pstree.img`),
//! a task's file table id (`ids-PID.img`) and its descriptors
//! (`fdinfo-ID.img`).

use crate::error::Result;
use crate::image::pb;
use crate::image::store::Images;

/// The entries of `pstree.img`, in file order.
pub fn pstree(dir: &Images) -> Result<Vec<pb::PstreeEntry>> {
    dir.read_all::<pb::PstreeEntry>("pstree.img", "PSTREE")
}

/// The id of the file table of task `pid` (`files_id` of `ids-PID.img`),
/// which names its `fdinfo-ID.img`.
pub fn files_id(dir: &Images, pid: u32) -> Result<u32> {
    Ok(dir
        .read_one::<pb::TaskKobjIdsEntry>(&format!("ids-{pid}.img"), "IDS")?
        .files_id)
}

/// The descriptors of file table `files_id`, in file order.
pub fn fdinfo(dir: &Images, files_id: u32) -> Result<Vec<pb::FdinfoEntry>> {
    dir.read_all::<pb::FdinfoEntry>(&format!("fdinfo-{files_id}.img"), "FDINFO")
}

/// The name crit gives a descriptor type (`fd_types` enum), or its number
/// when the enum has no such value.
pub fn fd_type_name(t: i32) -> std::borrow::Cow<'static, str> {
    match pb::FdTypes::try_from(t) {
        Ok(ft) => ft.as_str_name().into(),
        Err(_) => t.to_string().into(),
    }
}

/// The type as a JSON value: its name, or its number when unknown.
pub fn fd_type_json(t: i32) -> serde_json::Value {
    match pb::FdTypes::try_from(t) {
        Ok(ft) => ft.as_str_name().into(),
        Err(_) => t.into(),
    }
}

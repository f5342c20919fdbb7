//! `crit dump` (placeholder while being built).

pub mod core;
pub mod fdscan;
pub mod files;
pub mod imgdir;
pub mod maps;
pub mod mm;
pub mod opts;
pub mod pagemap;
pub mod pipes;
pub mod procfs;
pub mod tree;

pub use opts::{DumpOpts, ExtUnix, Summary};

pub fn dump(_o: &DumpOpts) -> crate::error::Result<Summary> {
    Err(crate::error::Error::msg("not yet"))
}

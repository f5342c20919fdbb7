//! `crit x`: views over a whole images directory.

use crate::error::{Error, Result};
use std::path::Path;

pub fn run(_dir: &Path, what: &str, _json: bool) -> Result<()> {
    Err(Error::msg(format!("x {what}: not built yet")))
}

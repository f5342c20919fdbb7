//! crit: checkpoint images in CRIU's format.

pub mod dump;
pub mod edit;
pub mod error;
pub mod explore;
pub mod image;
pub mod json;
pub mod model;
pub mod restore;
pub mod sys;
pub mod toolkit;

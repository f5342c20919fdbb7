//! crit: checkpoint images in CRIU's format.

// All unsafe code lives in `sys`, each use behind a documented safe
// function; everything above it is safe Rust.
#![deny(unsafe_code)]

pub mod dump;
pub mod edit;
pub mod error;
pub mod explore;
pub mod image;
pub mod json;
pub mod model;
pub mod restore;
#[allow(unsafe_code)]
pub mod sys;
pub mod toolkit;

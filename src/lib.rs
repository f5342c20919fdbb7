//! crit: checkpoint images in CRIU's format.

// All unsafe code lives in `sys`, each use behind a documented safe
// function; everything above it is safe Rust.
#![deny(unsafe_code)]
// Functions say one thing: none over 150 lines of code.
#![deny(clippy::too_many_lines)]

pub mod action;
pub mod detach;
pub mod dump;
pub mod edit;
pub mod error;
pub mod explore;
pub mod image;
pub mod json;
pub mod lazy;
pub mod model;
pub mod pageserver;
pub mod restore;
pub mod rpc;
#[allow(unsafe_code)]
pub mod sys;
pub mod toolkit;

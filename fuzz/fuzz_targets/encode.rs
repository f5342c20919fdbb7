#![no_main]
//! Arbitrary bytes as a JSON document (see common.rs for the checks).

use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| common::check_json(data));

//! crit's JSON form of images, byte-compatible with crit 4.2.

pub mod bytes_forms;
pub mod decode;
pub mod encode;
pub mod forms;
pub mod image;
pub mod reader;
pub mod schema;
pub mod writer;

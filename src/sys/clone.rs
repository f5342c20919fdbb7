//! TEMPORARY stand-in until the shared sys layer lands.
pub fn clone3_with_tid(_tid: i32, _flags: u64) -> std::io::Result<i32> {
    Err(std::io::Error::other("clone3 not yet"))
}

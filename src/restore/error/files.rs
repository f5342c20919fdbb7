use std::io;

/// A file of the tree (regular, pipe, socket, eventfd, ...) that cannot be
/// opened again as the images describe it.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// A call on a file, named by its id in the images.
    #[error("file id {id}: {what}: {source}")]
    Call {
        id: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

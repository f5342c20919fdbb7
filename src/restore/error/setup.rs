use std::io;

/// Options, images and the restore's own machinery (pipes, threads, the
/// images directory lock).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A call of crit's own, on no task.
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

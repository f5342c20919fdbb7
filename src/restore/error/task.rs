use std::io;

/// A task that cannot be rebuilt: forking it, its threads, memory,
/// registers, credentials and the rest of its state.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A call made for a task.
    #[error("pid {pid}: {what}: {source}")]
    Call {
        pid: u32,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

//! Unix sockets: [`plan`] decides from the socket model how each comes
//! back (pure, unit-tested on made-up models), [`exec`] makes crit's
//! share before the tree is forked, and [`task`] holds what runs inside
//! the tasks, where SO_PEERCRED depends on who makes a socket. [`addr`]
//! turns planned names into kernel addresses.

pub mod addr;
pub mod exec;
pub mod plan;
pub mod task;

#[cfg(test)]
mod tests;

pub use exec::open_unix;

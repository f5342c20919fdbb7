//! Progress and log output of a dump: steps and a live pages / MiB/s line
//! on stderr when it is a terminal (steps also with -v), everything into
//! the -o log file when given.

use super::error::DumpError;
use super::pages::Counters;
use super::DumpOpts;
use crate::error::Result;
use std::io::{IsTerminal, Write};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

pub struct Log {
    /// What the lines say they come from: "crit dump", "crit pre-dump".
    command: &'static str,
    tty: bool,
    verbose: u8,
    file: Option<Mutex<std::fs::File>>,
    t0: std::time::Instant,
}

impl Log {
    pub fn new(o: &DumpOpts, command: &'static str) -> Result<Log> {
        let file = match &o.log_file {
            // 0600 as the images: the log names files, sockets and paths.
            Some(p) => Some(Mutex::new(
                std::os::unix::fs::OpenOptionsExt::mode(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true),
                    0o600,
                )
                .open(p)
                .map_err(|source| DumpError::FileOp {
                    path: p.clone(),
                    what: "log file",
                    source,
                })?,
            )),
            None => None,
        };
        Ok(Log {
            command,
            tty: std::io::stderr().is_terminal(),
            verbose: o.verbose,
            file,
            t0: std::time::Instant::now(),
        })
    }

    fn to_file(&self, level: &str, m: &str) {
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                // One write per line (writeln! on a File makes one per
                // piece): a dump of many tasks logs thousands of lines.
                let line = format!("({:8.3}) {level}: {m}\n", self.t0.elapsed().as_secs_f64());
                let _ = f.write_all(line.as_bytes());
            }
        }
    }

    /// A step of the dump: shown on a terminal or with -v.
    pub fn step(&self, m: &str) {
        self.to_file("step", m);
        if self.tty {
            // Over a pages line that may be on screen; it is redrawn.
            crate::detach::say(&format!("\r\x1b[K{}: {m}", self.command));
        } else if self.verbose > 0 {
            crate::detach::say(&format!("{}: {m}", self.command));
        }
    }

    /// Detail shown with -v (and always logged).
    pub fn debug(&self, m: &str) {
        self.to_file("debug", m);
        if self.verbose > 1 {
            crate::detach::say(&format!("{}: {m}", self.command));
        }
    }

    /// What the user must hear (something not dumped): on stderr always,
    /// and logged.
    pub fn warn(&self, m: &str) {
        self.to_file("warning", m);
        crate::detach::say(&format!("{}: warning: {m}", self.command));
    }

    /// Goes to the log file only.
    pub fn info(&self, m: &str) {
        self.to_file("info", m);
    }
}

/// The live pages line: on a terminal only, redrawn every 200 ms while
/// memory is copied, and left as a final line when [`Ticker::stop`] is
/// called.
pub struct Ticker {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const PAGE: u64 = 4096;
const MIB: f64 = 1048576.0;

fn line(command: &str, c: &Counters, since: std::time::Instant) -> String {
    let copied = c.copied.load(Ordering::Relaxed);
    let queued = c.queued.load(Ordering::Relaxed).max(copied);
    let secs = since.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        copied as f64 / MIB / secs
    } else {
        0.0
    };
    format!(
        "{command}: pages {} of {} ({:.1} MiB, {:.0} MiB/s)",
        copied / PAGE,
        queued / PAGE,
        copied as f64 / MIB,
        rate
    )
}

impl Ticker {
    /// Starts the line if `log` writes to a terminal; a no-op otherwise.
    pub fn start(log: &Log, counters: Arc<Counters>) -> Ticker {
        if !log.tty {
            return Ticker {
                stop: None,
                thread: None,
            };
        }
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let since = std::time::Instant::now();
        let command = log.command;
        // Without a thread (the kernel refused one) there is no line.
        let thread = crate::sys::thread::spawn(move || loop {
            let done = !matches!(
                rx.recv_timeout(std::time::Duration::from_millis(200)),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            // \r and erase-line: the line is redrawn in place.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K{}", line(command, &counters, since));
            if done {
                let _ = writeln!(err);
                return;
            }
            let _ = err.flush();
        });
        Ticker {
            stop: Some(tx),
            thread: thread.ok(),
        }
    }

    /// Draws the final line and ends it.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.end();
    }
}

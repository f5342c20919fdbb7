//! Progress and log output of a dump: steps on stderr when it is a
//! terminal (or with -v), everything into the -o log file when given.

use super::DumpOpts;
use crate::error::{Error, Result};
use std::io::{IsTerminal, Write};
use std::sync::Mutex;

pub struct Log {
    tty: bool,
    verbose: u8,
    file: Option<Mutex<std::fs::File>>,
    t0: std::time::Instant,
}

impl Log {
    pub fn new(o: &DumpOpts) -> Result<Log> {
        let file = match &o.log_file {
            Some(p) => {
                Some(Mutex::new(std::fs::File::create(p).map_err(|e| {
                    Error::io(format!("{}: log file", p.display()), e)
                })?))
            }
            None => None,
        };
        Ok(Log {
            tty: std::io::stderr().is_terminal(),
            verbose: o.verbose,
            file,
            t0: std::time::Instant::now(),
        })
    }

    fn to_file(&self, level: &str, m: &str) {
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                let _ = writeln!(f, "({:8.3}) {level}: {m}", self.t0.elapsed().as_secs_f64());
            }
        }
    }

    /// A step of the dump: shown on a terminal or with -v.
    pub fn step(&self, m: &str) {
        self.to_file("step", m);
        if self.tty || self.verbose > 0 {
            eprintln!("crit dump: {m}");
        }
    }

    /// Detail shown with -v (and always logged).
    pub fn debug(&self, m: &str) {
        self.to_file("debug", m);
        if self.verbose > 1 {
            eprintln!("crit dump: {m}");
        }
    }

    /// Goes to the log file only.
    pub fn info(&self, m: &str) {
        self.to_file("info", m);
    }
}

//! What to grade, and how.

use std::net::SocketAddr;

/// The highest stage the grader knows.
pub const LAST_STAGE: u8 = 9;
/// The first of the fixed origin ports in `--addr` mode (and in the printed configs).
pub const DEFAULT_ORIGIN_PORT: u16 = 19101;

/// A program to start, or an address to talk to.
#[derive(Debug, Clone)]
pub enum Target {
    /// `PROGRAM ARGS...`, started per the contract.
    Program { command: String, args: Vec<String> },
    /// A proxy already running on a loopback address.
    Addr(SocketAddr),
}

/// Everything [`crate::run`] needs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Grade the checks of stages 1 to `stage`.
    pub stage: u8,
    pub target: Target,
    /// Only the checks with these names (all when empty).
    pub only: Vec<String>,
    /// The origins' first port; 0 lets the system pick (the default when a program is started).
    pub origin_port: u16,
}

impl Options {
    /// Grading `command args...` at `stage`, every check, origins on free ports.
    pub fn program(stage: u8, command: &str, args: &[&str]) -> Options {
        Options {
            stage,
            target: Target::Program {
                command: command.to_string(),
                args: args.iter().map(|a| a.to_string()).collect(),
            },
            only: Vec::new(),
            origin_port: 0,
        }
    }
}

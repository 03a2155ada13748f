//! Exit codes. Every verb ends with one of these; the README lists them.
//!
//! - `0` done
//! - `1` error (the message says what, and which setting when one is at fault)
//! - `2` bad command line (clap's own code)
//! - `3` `outbox status`: a lag threshold is exceeded
//! - `4` refused: the stale-replay guard held something back, or a confirmation was declined
//! - `130` interrupted (Ctrl-C) before the work was done; running the command again resumes

pub const LAGGING: u8 = 3;
pub const REFUSED: u8 = 4;
pub const INTERRUPTED: u8 = 130;

/// An outcome that is not an error in the program but must not exit 0.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }
}

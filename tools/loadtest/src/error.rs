//! How a request can fail, and how each failure is counted in the report.

use std::fmt;
use std::io;

/// How a failed request is counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Nothing listens on the port (ECONNREFUSED).
    ConnectRefused,
    /// The connection was reset, or closed before the response was complete.
    Reset,
    /// Connect, read, write or the whole request took longer than `--timeout`.
    Timeout,
    /// The bytes were not a valid HTTP/1.1 response.
    BadResponse,
    /// Anything else (e.g. out of file descriptors).
    Other,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::ConnectRefused,
        ErrorKind::Reset,
        ErrorKind::Timeout,
        ErrorKind::BadResponse,
        ErrorKind::Other,
    ];

    /// The key used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::ConnectRefused => "connect_refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::BadResponse => "bad_response",
            ErrorKind::Other => "other",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug)]
pub enum ClientError {
    Connect(io::Error),
    Io(io::Error),
    /// The server closed the connection before the response was complete.
    Closed,
    Bad(&'static str),
}

impl ClientError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClientError::Connect(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => ErrorKind::ConnectRefused,
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
                _ => ErrorKind::Other,
            },
            ClientError::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof => ErrorKind::Reset,
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ErrorKind::Timeout,
                _ => ErrorKind::Other,
            },
            ClientError::Closed => ErrorKind::Reset,
            ClientError::Bad(_) => ErrorKind::BadResponse,
        }
    }

    /// True for what a server closing an idle keep-alive connection looks like to the next
    /// request on it; such a request is retried once on a new connection, as browsers do.
    pub(crate) fn is_stale_connection(&self) -> bool {
        match self {
            ClientError::Closed => true,
            ClientError::Io(e) => matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ),
            _ => false,
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect: {e}"),
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Closed => {
                f.write_str("connection closed before the response was complete")
            }
            ClientError::Bad(why) => write!(f, "bad response: {why}"),
        }
    }
}

impl std::error::Error for ClientError {}

//! What can go wrong while reading one HTTP message, and the status code each failure earns.

use std::fmt;
use std::io;

/// A failure to read or frame one message. Each variant knows the status a server answers
/// with when the *client* caused it; a proxy maps failures of the *upstream* to 502 instead.
#[derive(Debug)]
pub enum HttpError {
    /// The peer closed the connection before sending a single byte of a new message.
    /// Between keep-alive requests this is the normal end of a connection, not an error.
    Closed,
    /// The peer closed the connection in the middle of a message.
    Truncated,
    /// Nothing at all arrived within the idle timeout (a keep-alive connection left unused, or
    /// an upstream that never starts its response).
    IdleTimeout,
    /// The peer started a message but was too slow to finish it (slow head, stalled body).
    Timeout,
    /// Malformed syntax or a framing ambiguity that could be used for request smuggling.
    BadSyntax(&'static str),
    /// The request line alone is longer than the limit.
    UriTooLong,
    /// The head is larger than the limit, or has too many header lines.
    HeadTooLarge,
    /// The body is larger than the limit.
    BodyTooLarge,
    /// A transfer coding other than `chunked` that we would have to understand to forward.
    UnsupportedTransferCoding,
    /// `Expect` with anything but `100-continue`.
    ExpectationFailed,
    /// Any other I/O error on the socket.
    Io(io::Error),
}

impl HttpError {
    /// The status a server replies with when a client caused this error, if a reply makes sense.
    /// `None` means the connection is already unusable: close it without a word.
    pub fn client_status(&self) -> Option<u16> {
        match self {
            HttpError::Closed
            | HttpError::IdleTimeout
            | HttpError::Truncated
            | HttpError::Io(_) => None,
            HttpError::Timeout => Some(408),
            HttpError::BadSyntax(_) => Some(400),
            HttpError::UriTooLong => Some(414),
            HttpError::HeadTooLarge => Some(431),
            HttpError::BodyTooLarge => Some(413),
            HttpError::UnsupportedTransferCoding => Some(501),
            HttpError::ExpectationFailed => Some(417),
        }
    }

    /// Converts a read error, folding the two ways a socket timeout surfaces into `Timeout`.
    pub fn from_read(err: io::Error) -> HttpError {
        match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout,
            io::ErrorKind::UnexpectedEof => HttpError::Truncated,
            _ => HttpError::Io(err),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Closed => f.write_str("connection closed"),
            HttpError::Truncated => f.write_str("connection closed in the middle of a message"),
            HttpError::IdleTimeout => f.write_str("nothing arrived before the idle timeout"),
            HttpError::Timeout => f.write_str("timed out waiting for the peer"),
            HttpError::BadSyntax(why) => write!(f, "bad message: {why}"),
            HttpError::UriTooLong => f.write_str("request line too long"),
            HttpError::HeadTooLarge => f.write_str("header block too large or too many headers"),
            HttpError::BodyTooLarge => f.write_str("body larger than allowed"),
            HttpError::UnsupportedTransferCoding => f.write_str("unsupported transfer coding"),
            HttpError::ExpectationFailed => f.write_str("unsupported Expect value"),
            HttpError::Io(err) => write!(f, "i/o error: {err}"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<io::Error> for HttpError {
    fn from(err: io::Error) -> HttpError {
        HttpError::from_read(err)
    }
}

impl From<httparse::Error> for HttpError {
    fn from(err: httparse::Error) -> HttpError {
        match err {
            httparse::Error::TooManyHeaders => HttpError::HeadTooLarge,
            httparse::Error::HeaderName => HttpError::BadSyntax("invalid header name"),
            httparse::Error::HeaderValue => HttpError::BadSyntax("invalid header value"),
            httparse::Error::NewLine => HttpError::BadSyntax("invalid line ending"),
            httparse::Error::Status => HttpError::BadSyntax("invalid status"),
            httparse::Error::Token => HttpError::BadSyntax("invalid token"),
            httparse::Error::Version => HttpError::BadSyntax("invalid HTTP version"),
        }
    }
}

//! HTTP/1.1 on raw sockets: message heads, body framing and the header rules a proxy applies.
//!
//! Parsing of the head itself is `httparse`'s job; everything around it (reading a head that
//! arrives in any number of pieces, limits, RFC 9112 body framing, hop-by-hop headers) is here,
//! because that is exactly what the C course got wrong.

pub mod body;
pub mod date;
pub mod error;
pub mod framing;
pub mod head;
pub mod headers;
pub mod limits;
pub mod pump;
pub mod stream;
pub mod target;
pub mod weight;

pub use error::HttpError;
pub use framing::BodyFraming;
pub use head::{Header, RequestHead, ResponseHead};
pub use limits::Limits;
pub use stream::{BufStream, Socket};

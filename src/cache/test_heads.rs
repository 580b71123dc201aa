//! Request and response heads for the cache's unit tests, built from (name, value) pairs.

use crate::http::{Header, RequestHead, ResponseHead};

fn headers(pairs: &[(&str, &str)]) -> Vec<Header> {
    pairs
        .iter()
        .map(|(n, v)| Header {
            name: (*n).into(),
            value: v.as_bytes().to_vec(),
        })
        .collect()
}

/// A request with `pairs` as its header fields, in that order.
pub(crate) fn request(method: &str, target: &str, pairs: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: method.into(),
        target: target.into(),
        minor_version: 1,
        headers: headers(pairs),
        route: None,
        original_target: None,
    }
}

/// A response with `status` and `pairs` as its header fields, in that order.
pub(crate) fn response(status: u16, pairs: &[(&str, &str)]) -> ResponseHead {
    ResponseHead {
        status,
        reason: String::new(),
        minor_version: 1,
        headers: headers(pairs),
    }
}

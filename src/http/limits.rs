//! Size limits on what a peer may send. Defaults follow nginx.

/// Largest request body by default (nginx's `client_max_body_size`).
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// Upper bounds applied while reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (`GET /path HTTP/1.1`); nginx's `large_client_header_buffers` 8k.
    pub max_request_line: usize,
    /// Largest whole head, request line and headers together (nginx: 4 x 8k).
    pub max_head: usize,
    /// Most header lines in one head.
    pub max_headers: usize,
    /// Largest request body (nginx's `client_max_body_size`, 1 MiB).
    pub max_body: u64,
    /// Largest chunk-size line or trailer section in a chunked body.
    pub max_chunk_line: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_request_line: 8 * 1024,
            max_head: 32 * 1024,
            max_headers: 100,
            max_body: DEFAULT_MAX_BODY,
            max_chunk_line: 4 * 1024,
        }
    }
}

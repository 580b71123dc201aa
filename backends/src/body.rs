//! Response bodies: one type that hyper polls frame by frame.
//!
//! hyper sends each data frame as it comes: with a known length (`size_hint` exact) under a
//! `Content-Length`, otherwise to an HTTP/1.1 client as one chunk per frame. An error from
//! `poll_frame` makes hyper abort the connection, which is what `/drop` is made of.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::Sleep;

/// Largest data frame of `/bytes` (and of `/chunked` chunks up to this size): a slice of
/// [`PATTERN`], so no frame is ever allocated or copied.
pub(crate) const FRAME: usize = 64 * 1024;

/// `abc...zabc...`, long enough that a frame of `FRAME` bytes can start at any letter.
static PATTERN: [u8; FRAME + 26] = pattern_table();

const fn pattern_table() -> [u8; FRAME + 26] {
    let mut table = [0u8; FRAME + 26];
    let mut i = 0;
    while i < table.len() {
        table[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    table
}

/// `len` bytes of the pattern as it stands at offset `pos` (a frame of at most `FRAME`).
fn pattern_at(pos: u64, len: usize) -> Bytes {
    let start = (pos % 26) as usize;
    Bytes::from_static(&PATTERN[start..start + len])
}

/// `len` bytes of the pattern from offset 0, in one buffer (for chunks over `FRAME` bytes).
fn pattern_vec(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// What every endpoint answers with.
pub(crate) enum Out {
    /// A body in memory (or none: `None` once sent, or from the start).
    Full(Option<Bytes>),
    /// `len - pos` more bytes of the pattern, with a known length.
    Pattern { pos: u64, len: u64 },
    /// `/chunked`: one frame per chunk, `delay` apart.
    Chunks(Box<Chunks>),
    /// `/drop`: a short body, then an error.
    Drop(DropStage),
}

pub(crate) struct Chunks {
    left: u64,
    size: u64,
    pos: u64,
    delay: Duration,
    /// Announce the total length: for HTTP/1.0, which has no chunked coding.
    known_length: bool,
    /// For chunks over `FRAME` bytes: the pattern, `size + 26` long, sliced without copying.
    big: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
}

pub(crate) enum DropStage {
    /// Send this many bytes of the pattern, then end the connection.
    Send(u64),
    /// Sent; give hyper one chance to flush them to the socket before the error.
    Flush,
    Fail,
}

/// The error that makes hyper abort a connection midway (`/drop`).
#[derive(Debug)]
pub(crate) struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("/drop: connection closed midway through the body")
    }
}

impl std::error::Error for Dropped {}

impl Out {
    pub(crate) fn empty() -> Out {
        Out::Full(None)
    }

    pub(crate) fn full(bytes: impl Into<Bytes>) -> Out {
        let bytes = bytes.into();
        // An empty frame would end the body just the same; hyper wants `is_end_stream` instead.
        Out::Full((!bytes.is_empty()).then_some(bytes))
    }

    pub(crate) fn pattern(len: u64) -> Out {
        Out::Pattern { pos: 0, len }
    }

    /// `chunks` chunks of `size` bytes (`size` >= 1), `delay` apart.
    pub(crate) fn chunks(chunks: u64, size: u64, delay: Duration, known_length: bool) -> Out {
        let big = usize::try_from(size)
            .ok()
            .filter(|&s| s > FRAME)
            .map(|s| Bytes::from(pattern_vec(s + 26)));
        Out::Chunks(Box::new(Chunks {
            left: chunks,
            size,
            pos: 0,
            delay,
            known_length,
            big,
            sleep: None,
        }))
    }

    pub(crate) fn drop_after(sent: u64) -> Out {
        Out::Drop(DropStage::Send(sent))
    }
}

impl Body for Out {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Out::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Out::Pattern { pos, len } => {
                if *pos >= *len {
                    return Poll::Ready(None);
                }
                let n = (*len - *pos).min(FRAME as u64) as usize;
                let frame = pattern_at(*pos, n);
                *pos += n as u64;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Out::Chunks(c) => c.poll_chunk(cx),
            Out::Drop(stage) => match *stage {
                DropStage::Send(n) => {
                    *stage = DropStage::Flush;
                    let n = usize::try_from(n).unwrap_or(FRAME).min(FRAME);
                    Poll::Ready(Some(Ok(Frame::data(pattern_at(0, n)))))
                }
                DropStage::Flush => {
                    // hyper flushes what it holds while the body is pending; failing now
                    // would make it drop the 100 bytes unsent.
                    *stage = DropStage::Fail;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                DropStage::Fail => Poll::Ready(Some(Err(Box::new(Dropped)))),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Out::Full(bytes) => bytes.is_none(),
            Out::Pattern { pos, len } => pos >= len,
            Out::Chunks(c) => c.left == 0,
            Out::Drop(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Out::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Out::Pattern { pos, len } => SizeHint::with_exact(len - pos),
            Out::Chunks(c) if c.known_length => SizeHint::with_exact(c.left * c.size),
            Out::Chunks(_) => SizeHint::default(),
            // What `/drop` announces; it sends less.
            Out::Drop(_) => SizeHint::with_exact(crate::routes::DROP_ANNOUNCED),
        }
    }
}

impl Chunks {
    fn poll_chunk(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, <Out as Body>::Error>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        let start = (self.pos % 26) as usize;
        let chunk = match &self.big {
            Some(big) => big.slice(start..start + self.size as usize),
            None => pattern_at(self.pos, self.size as usize),
        };
        self.pos += self.size;
        self.left -= 1;
        if self.left > 0 && !self.delay.is_zero() {
            self.sleep = Some(Box::pin(tokio::time::sleep(self.delay)));
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Polls a body that never waits (no `/chunked` delay) to the end.
    fn collect(mut body: Out) -> (Vec<usize>, Vec<u8>) {
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let (mut sizes, mut data) = (Vec::new(), Vec::new());
        for _ in 0..1_000_000 {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let bytes = frame.into_data().expect("data frame");
                    sizes.push(bytes.len());
                    data.extend_from_slice(&bytes);
                }
                Poll::Ready(None) => return (sizes, data),
                Poll::Ready(Some(Err(e))) => panic!("error {e}"),
                Poll::Pending => panic!("pending"),
            }
        }
        panic!("endless body")
    }

    #[test]
    fn pattern_frames_continue_the_pattern() {
        let n = 2 * FRAME + 7;
        let body = Out::pattern(n as u64);
        assert_eq!(body.size_hint().exact(), Some(n as u64));
        let (sizes, data) = collect(body);
        assert_eq!(sizes, vec![FRAME, FRAME, 7]);
        assert_eq!(data, pattern_vec(n));
        assert!(Out::pattern(0).is_end_stream());
    }

    #[test]
    fn chunks_are_one_frame_each_small_and_big() {
        for size in [3usize, FRAME, FRAME + 5] {
            let body = Out::chunks(3, size as u64, Duration::ZERO, false);
            assert_eq!(body.size_hint().exact(), None);
            let (sizes, data) = collect(body);
            assert_eq!(sizes, vec![size; 3], "{size}");
            assert_eq!(data, pattern_vec(3 * size), "{size}");
        }
        let known = Out::chunks(3, 10, Duration::ZERO, true);
        assert_eq!(known.size_hint().exact(), Some(30));
    }

    #[test]
    fn full_body_of_nothing_is_ended() {
        assert!(Out::full("").is_end_stream());
        assert!(Out::empty().is_end_stream());
        assert_eq!(collect(Out::full("hi")).1, b"hi");
    }
}

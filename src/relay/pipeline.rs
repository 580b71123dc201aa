//! The response body on its way to the client when phases asked for it: decoded payload in,
//! observers, transforms, then the client's framing out. Only bounded buffers: each piece
//! that arrives goes all the way through before the next is read.

use std::io::{self, Write};

use super::phases::{BodyObserver, BodyPlan, BodyTransform};
use crate::http::body::{write_chunk, Encoding, LAST_CHUNK};

/// A `Write` that `copy_body` (or a reply from memory) feeds decoded payload into.
pub(super) struct BodySink<'a, W: Write> {
    client: &'a mut W,
    encoding: Encoding,
    observers: Vec<Box<dyn BodyObserver>>,
    transforms: Vec<Box<dyn BodyTransform>>,
    /// Two buffers the transforms pass pieces through, kept between pieces.
    stage: Vec<u8>,
    next: Vec<u8>,
    scratch: Vec<u8>,
    /// Payload bytes (after transforms) the client was given.
    delivered: u64,
    ended: bool,
}

impl<'a, W: Write> BodySink<'a, W> {
    pub(super) fn new(
        client: &'a mut W,
        encoding: Encoding,
        mut plan: BodyPlan,
    ) -> BodySink<'a, W> {
        let (observers, transforms) = plan.take();
        BodySink {
            client,
            encoding,
            observers,
            transforms,
            stage: Vec::new(),
            next: Vec::new(),
            scratch: Vec::new(),
            delivered: 0,
            ended: false,
        }
    }

    pub(super) fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The payload has ended: `complete` tells the observers whether it arrived whole; when
    /// it did, the transforms give up what they hold and the client's framing is closed.
    pub(super) fn finish(&mut self, complete: bool) -> io::Result<()> {
        self.end_observers(complete);
        if !complete {
            return Ok(());
        }
        self.pass(&[], true)?;
        if self.encoding == Encoding::Chunked {
            self.client.write_all(LAST_CHUNK)?;
        }
        self.client.flush()
    }

    fn end_observers(&mut self, complete: bool) {
        if !self.ended {
            self.ended = true;
            for observer in &mut self.observers {
                observer.end(complete);
            }
        }
    }

    /// Runs `input` through every transform (and, when `finishing`, flushes each in turn, so
    /// what one gives up at the end still goes through the ones after it), then writes the
    /// result to the client.
    fn pass(&mut self, input: &[u8], finishing: bool) -> io::Result<()> {
        let out: &[u8] = if self.transforms.is_empty() {
            input
        } else {
            self.stage.clear();
            self.stage.extend_from_slice(input);
            for transform in &mut self.transforms {
                self.next.clear();
                transform.data(&self.stage, &mut self.next)?;
                if finishing {
                    transform.finish(&mut self.next)?;
                }
                std::mem::swap(&mut self.stage, &mut self.next);
            }
            &self.stage
        };
        if out.is_empty() {
            return Ok(());
        }
        match self.encoding {
            Encoding::Raw => self.client.write_all(out)?,
            Encoding::Chunked => write_chunk(self.client, out, &mut self.scratch)?,
        }
        self.delivered += out.len() as u64;
        Ok(())
    }
}

impl<W: Write> Write for BodySink<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for observer in &mut self.observers {
            observer.data(data);
        }
        self.pass(data, false)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.client.flush()
    }
}

impl<W: Write> Drop for BodySink<'_, W> {
    /// Observers always learn how the body ended, whichever way the relay left.
    fn drop(&mut self) {
        self.end_observers(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    struct Upper;
    impl BodyTransform for Upper {
        fn data(&mut self, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
            out.extend(input.iter().map(u8::to_ascii_uppercase));
            Ok(())
        }
        fn finish(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
            Ok(())
        }
    }

    /// Holds everything back and adds a trailer line at the end: a stand-in for a compressor.
    struct Hoard(Vec<u8>);
    impl BodyTransform for Hoard {
        fn data(&mut self, input: &[u8], _out: &mut Vec<u8>) -> io::Result<()> {
            self.0.extend_from_slice(input);
            Ok(())
        }
        fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
            out.append(&mut self.0);
            out.extend_from_slice(b"|end");
            Ok(())
        }
    }

    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<(Vec<u8>, Vec<bool>)>>);
    impl BodyObserver for Seen {
        fn data(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().0.extend_from_slice(bytes);
        }
        fn end(&mut self, complete: bool) {
            self.0.lock().unwrap().1.push(complete);
        }
    }

    #[test]
    fn observers_see_the_identity_body_and_transforms_chain_in_order() {
        let seen = Seen::default();
        let mut plan = BodyPlan::default();
        plan.observe(seen.clone());
        plan.transform(Hoard(Vec::new()));
        plan.transform(Upper);
        let mut out = Vec::new();
        let mut sink = BodySink::new(&mut out, Encoding::Chunked, plan);
        sink.write_all(b"abc").unwrap();
        sink.write_all(b"de").unwrap();
        sink.finish(true).unwrap();
        assert_eq!(sink.delivered(), 9);
        drop(sink);
        assert_eq!(out, b"9\r\nABCDE|END\r\n0\r\n\r\n");
        let (body, ends) = seen.0.lock().unwrap().clone();
        assert_eq!(
            (body.as_slice(), ends.as_slice()),
            (&b"abcde"[..], &[true][..])
        );
    }

    #[test]
    fn a_sink_dropped_early_tells_observers_the_body_is_incomplete() {
        let seen = Seen::default();
        let mut plan = BodyPlan::default();
        plan.observe(seen.clone());
        let mut out = Vec::new();
        let mut sink = BodySink::new(&mut out, Encoding::Raw, plan);
        sink.write_all(b"abc").unwrap();
        drop(sink);
        assert_eq!(out, b"abc");
        assert_eq!(seen.0.lock().unwrap().1, vec![false]);
    }
}

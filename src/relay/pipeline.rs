//! The response body on its way to the client when phases asked for it: decoded payload in,
//! observers, transforms, then the client's framing out. Only bounded buffers: each piece
//! that arrives goes through the transforms before the next is read, and their output is
//! held until 16 KiB are ready or the origin pauses (a flush), then written.

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
    /// The last transform's output not yet written to the client.
    held: Vec<u8>,
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
            held: Vec::new(),
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
        self.pass(&[], Step::Finish)?;
        // What was held and the end of the framing, in one write.
        let held = std::mem::take(&mut self.held);
        match self.encoding {
            Encoding::Raw => self.client.write_all(&held)?,
            Encoding::Chunked => {
                self.scratch.clear();
                if !held.is_empty() {
                    write!(self.scratch, "{:x}\r\n", held.len())?;
                    self.scratch.extend_from_slice(&held);
                    self.scratch.extend_from_slice(b"\r\n");
                }
                self.scratch.extend_from_slice(LAST_CHUNK);
                self.client.write_all(&self.scratch)?;
            }
        }
        self.delivered += held.len() as u64;
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

    /// Runs `input` through every transform (and then, at a flush or the end, has each give
    /// up what it holds, in order, so that it still goes through the ones after it). The
    /// result is held until [`SEND_AT`] bytes are ready or the step asks for it, so a body the
    /// transforms shrink goes out in a few large writes, not one per piece read.
    fn pass(&mut self, input: &[u8], step: Step) -> io::Result<()> {
        if self.transforms.is_empty() {
            return self.send(input);
        }
        let last = self.transforms.len() - 1;
        for (n, transform) in self.transforms.iter_mut().enumerate() {
            // The first transform reads `input` where it lies (a compressor's input is the
            // large side: no copy of it); each later one reads what the one before produced.
            // The last one appends to what is held for the client.
            let source: &[u8] = if n == 0 { input } else { &self.stage };
            let target = if n == last {
                &mut self.held
            } else {
                self.next.clear();
                &mut self.next
            };
            transform.data(source, target)?;
            match step {
                Step::Data => {}
                Step::Flush => transform.flush(target)?,
                Step::Finish => transform.finish(target)?,
            }
            if n != last {
                std::mem::swap(&mut self.stage, &mut self.next);
            }
        }
        // At the end, `finish` writes what is held together with the end of the framing.
        if step == Step::Finish || (step == Step::Data && self.held.len() < SEND_AT) {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        let sent = self.send(&held);
        self.held = held;
        self.held.clear();
        sent
    }

    /// Writes transformed payload to the client in its framing.
    fn send(&mut self, out: &[u8]) -> io::Result<()> {
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

/// How far a piece goes through the transforms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Payload only: the transforms may hold some back.
    Data,
    /// The origin paused: everything so far goes to the client.
    Flush,
    /// The payload ended.
    Finish,
}

/// Transformed bytes held before a write to the client: a compressed 100 KiB JSON body
/// (about 12 to 19 KiB) goes out in one or two writes.
const SEND_AT: usize = 16 * 1024;

impl<W: Write> Write for BodySink<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        for observer in &mut self.observers {
            observer.data(data);
        }
        self.pass(data, Step::Data)?;
        Ok(data.len())
    }

    /// The origin paused ([`copy_body_flushing`](crate::http::body::copy_body_flushing)):
    /// what the transforms hold goes to the client now.
    fn flush(&mut self) -> io::Result<()> {
        self.pass(&[], Step::Flush)?;
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

    /// Records each write apart, to count the writes a body took.
    #[derive(Default)]
    struct Writes(Vec<Vec<u8>>);
    impl Write for Writes {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.push(data.to_vec());
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn transformed_output_is_held_until_a_flush_a_full_send_or_the_end() {
        let mut plan = BodyPlan::default();
        plan.transform(Upper);
        let mut writes = Writes::default();
        let mut sink = BodySink::new(&mut writes, Encoding::Chunked, plan);
        for _ in 0..10 {
            sink.write_all(b"abc").unwrap(); // small pieces from a fast origin: held
        }
        sink.flush().unwrap(); // the origin paused: one chunk with all of it
        let big = vec![b'x'; SEND_AT];
        sink.write_all(&big).unwrap(); // a full send goes at once
        sink.write_all(b"tail").unwrap();
        sink.finish(true).unwrap();
        assert_eq!(sink.delivered(), 30 + SEND_AT as u64 + 4);
        drop(sink);
        let writes = writes.0;
        assert_eq!(writes.len(), 3, "one write per flush, full send and end");
        assert_eq!(
            writes[0],
            format!("1e\r\n{}\r\n", "ABC".repeat(10)).into_bytes()
        );
        assert!(writes[1].starts_with(b"4000\r\nXXX"));
        assert_eq!(
            writes[2], b"4\r\nTAIL\r\n0\r\n\r\n",
            "the last chunk and the end together"
        );
    }
}

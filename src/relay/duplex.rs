//! A request body and the response to it at the same time, on one thread: full duplex.
//!
//! An origin may answer before it has read the whole upload: a `413` or `401` on seeing the
//! head, or an echo that streams the body back as it comes. A relay that finishes sending the
//! body before it reads the response then waits on a client that waits on it (or pushes into
//! an origin that stopped reading) and ends in a `502` or a timeout. So while a body is on its
//! way, the relay waits on both peers with `poll(2)` and serves whichever has something:
//!
//! - [`upload`]: before the response head, the body goes up a step at a time
//!   ([`BodyPump`]), and the origin's early final head ends the wait;
//! - [`DuplexSource`]: after an early `2xx`, the response body is read through it, and
//!   whenever the origin has nothing to give and the client has body bytes, they are passed
//!   up first.
//!
//! The threads stay blocking, as everywhere else: a step reads only a peer that `poll` showed
//! readable. Bodiless requests never come here, so they pay nothing for it. A peer without a
//! descriptor to poll (a test double) is read as it comes, as before.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use crate::http::body::BodyError;
use crate::http::head::read_response_head;
use crate::http::pump::BodyPump;
use crate::http::{BufStream, HttpError, Limits, ResponseHead, Socket};
use crate::sys;
use crate::upstream::UpstreamConn;

/// How an upload ended when nothing failed.
pub(super) enum Upload {
    /// The whole body went up; the response is still to be read.
    Sent,
    /// The origin sent its final response head first; the pump holds the rest of the body.
    Answered(ResponseHead),
}

/// What the waits of a duplex exchange are bounded by.
#[derive(Clone, Copy)]
pub(super) struct Bounds<'a> {
    /// The client's limits, for the request body's framing.
    pub(super) limits: &'a Limits,
    /// The origin's limits, for its response head.
    pub(super) upstream_limits: &'a Limits,
    /// Longest the origin may keep us waiting for its head, once it started one.
    pub(super) upstream_timeout: Duration,
    /// Longest both peers may stay silent (the client's body timeout).
    pub(super) body_timeout: Duration,
}

/// Which peer to serve next.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    Client,
    Upstream,
    /// Neither said anything within the wait.
    Silence,
}

fn upstream_has_input(conn: &UpstreamConn) -> bool {
    !conn.buffered().is_empty() || conn.get_ref().has_buffered()
}

fn client_has_input<S: Socket>(client: &BufStream<S>) -> bool {
    !client.buffered().is_empty() || client.get_ref().holds_input()
}

/// Waits until the origin or the client has something to read, the origin first: an answer
/// must not hide behind a client that keeps sending.
fn wait_turn<S: Socket>(
    client: &BufStream<S>,
    conn: &UpstreamConn,
    timeout: Duration,
) -> io::Result<Turn> {
    if upstream_has_input(conn) {
        return Ok(Turn::Upstream);
    }
    let upstream_fd = conn.get_ref().as_fd();
    if client_has_input(client) {
        // One poll without waiting, so a fast client does not hide an early answer.
        return Ok(if sys::poll_now(upstream_fd)? {
            Turn::Upstream
        } else {
            Turn::Client
        });
    }
    let Some(client_fd) = client.get_ref().input_fd() else {
        // Nothing to wait on: read the client, under its own read timeout.
        return Ok(Turn::Client);
    };
    let ready = sys::wait_readable(&[upstream_fd, client_fd], timeout)?;
    Ok(match ready.as_slice() {
        [true, _] => Turn::Upstream,
        [_, true] => Turn::Client,
        _ => Turn::Silence,
    })
}

/// Sends the request body while watching for the origin's answer. Returns when the body is
/// all sent, or when the origin's final response head arrived first (interim responses met
/// on the way are dropped: the client is busy sending and will see the final answer).
///
/// Errors tell who failed: `Source` is the client (cut off, too slow: a silence of both
/// peers past the body timeout is the client's, since the origin is waiting for its body),
/// `Sink` the origin (stopped reading without an answer, or answered garbage).
pub(super) fn upload<S: Socket>(
    client: &mut BufStream<S>,
    conn: &mut UpstreamConn,
    pump: &mut BodyPump,
    bounds: Bounds<'_>,
) -> Result<Upload, BodyError> {
    // Bounded: each round moves the body on (a read from the client, at most its length in
    // all), consumes an interim head (at most `MAX_INTERIM` of them), or ends.
    const MAX_INTERIM: usize = 16;
    let mut interim = 0;
    while !pump.is_done() {
        let turn = wait_turn(client, conn, bounds.body_timeout).map_err(BodyError::Sink)?;
        match turn {
            Turn::Upstream => match early_head(conn, bounds)? {
                Some(head) => return Ok(Upload::Answered(head)),
                None if interim < MAX_INTERIM => interim += 1,
                None => return Err(origin_error("too many interim responses")),
            },
            Turn::Client => match pump.step(client, conn, bounds.limits) {
                // A write that fails may be the origin closing after its answer.
                Err(BodyError::Sink(err)) => {
                    if upstream_has_input(conn) || sys::readable_now(conn.get_ref().as_fd()) {
                        if let Ok(Some(head)) = early_head(conn, bounds) {
                            return Ok(Upload::Answered(head));
                        }
                    }
                    return Err(BodyError::Sink(err));
                }
                other => other?,
            },
            Turn::Silence => return Err(BodyError::Source(HttpError::Timeout)),
        }
    }
    Ok(Upload::Sent)
}

/// Reads the head the origin started sending: `Some` for a final one, `None` for an interim
/// one (`100 Continue` and the like). A close or garbage is the origin's failure.
fn early_head(
    conn: &mut UpstreamConn,
    bounds: Bounds<'_>,
) -> Result<Option<ResponseHead>, BodyError> {
    match read_response_head(conn, bounds.upstream_limits, Some(bounds.upstream_timeout)) {
        Ok(head) if head.status >= 200 => Ok(Some(head)),
        // A `101` is not what a body upload may switch to; the head read after the body
        // decides (see `attempt.rs`), so it is taken as interim here, as before.
        Ok(_) => Ok(None),
        Err(err) => Err(origin_error(&format!("bad early response: {err}"))),
    }
}

fn origin_error(why: &str) -> BodyError {
    BodyError::Sink(io::Error::other(why.to_owned()))
}

/// The client connection shared between the two directions of a duplex response: the
/// response is written to it while the rest of the request body is read from it, by turns on
/// one thread (never both at once, so the cell is never borrowed twice).
pub(super) struct SharedClient<'c, S>(pub(super) &'c RefCell<&'c mut BufStream<S>>);

impl<S: Socket> Write for SharedClient<'_, S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.client()?.write(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.client()?.flush()
    }
}

impl<'c, S> SharedClient<'c, S> {
    fn client(&self) -> io::Result<std::cell::RefMut<'c, &'c mut BufStream<S>>> {
        self.0
            .try_borrow_mut()
            .map_err(|_| io::Error::other("client connection busy"))
    }
}

/// How the request body ended while a duplex response was relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyEnd {
    /// Still going when the response ended (or it was never finished).
    Pending,
    /// All sent.
    Sent,
    /// The origin stopped reading it: the rest is left on the client connection.
    Refused,
    /// The client broke it off, sent it badly or too slowly, or past the size limit: the
    /// client's failure, not the origin's.
    ClientFailed,
}

/// The origin's side of a duplex response: a `Read` of the response bytes that, whenever the
/// origin has nothing yet, passes the client's request body bytes up first.
pub(super) struct DuplexSource<'a, 'c, S> {
    pub(super) conn: &'a mut UpstreamConn,
    pub(super) client: &'c RefCell<&'c mut BufStream<S>>,
    pub(super) pump: BodyPump,
    pub(super) bounds: Bounds<'a>,
    pub(super) end: BodyEnd,
}

impl<S: Socket> DuplexSource<'_, '_, S> {
    fn pumping(&self) -> bool {
        self.end == BodyEnd::Pending && !self.pump.is_done()
    }

    /// Moves the request body on by one step; a failure ends the pumping and says whose.
    fn pump_step(&mut self) -> io::Result<()> {
        let mut client = self
            .client
            .try_borrow_mut()
            .map_err(|_| io::Error::other("client connection busy"))?;
        match self.pump.step(&mut client, self.conn, self.bounds.limits) {
            Ok(()) if self.pump.is_done() => self.end = BodyEnd::Sent,
            Ok(()) => {}
            Err(BodyError::Sink(_)) => self.end = BodyEnd::Refused,
            Err(err) => {
                self.end = BodyEnd::ClientFailed;
                return Err(io::Error::other(format!("request body: {err}")));
            }
        }
        Ok(())
    }
}

impl<S: Socket> Read for DuplexSource<'_, '_, S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Bounded: each round passes request body bytes on (at most the body in all) or
        // returns.
        while self.pumping() {
            let turn = {
                let client = self
                    .client
                    .try_borrow()
                    .map_err(|_| io::Error::other("client connection busy"))?;
                wait_turn(&client, self.conn, self.bounds.body_timeout)?
            };
            match turn {
                Turn::Upstream => break,
                Turn::Client => self.pump_step()?,
                Turn::Silence => {
                    // Both quiet: the origin most likely waits for the body the client does
                    // not send. Not the origin's failure.
                    self.end = BodyEnd::ClientFailed;
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "request body stalled",
                    ));
                }
            }
        }
        if self.pump.is_done() && self.end == BodyEnd::Pending {
            self.end = BodyEnd::Sent;
        }
        self.conn.read(buf)
    }
}

//! The parker: one thread that watches waiting connections (idle keep-alive ones, and those
//! whose request head is still arriving) and hands each back to the pool as soon as it has
//! more to read, or ends it when its wait is over.
//!
//! This is the heart of an event loop, reduced to one job. A connection's socket joins an
//! edge-triggered `epoll` set ([`sys::ReadySet`]) the first time it is parked and stays there
//! until it closes, so parking it again is a table entry under a lock, no system call; the
//! parker sleeps in `epoll_wait` and is told only about sockets where bytes arrived, so a
//! request costs the same with ten parked connections or ten thousand. A report for a
//! connection a worker has is noted in its slot, and the worker, about to park it, serves it
//! again instead: that is how a request arriving between a response and the park is never
//! stranded. (The first version kept the connections on its own thread and called `poll` with
//! every one of them after each wake-up, and each park had to wake it to add one; the second
//! armed a one-shot registration at every park, a system call per request. The chapter on
//! measuring shows what that cost.) Deadlines are checked by a sweep of the table, only when
//! the earliest one is due.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::conn::{Conn, ConnGauges, SlotOwner, Watch};
use super::refuse_now;
use crate::relay::Reply;
use crate::sys::{ReadySet, Wakeup};

/// Longest single wait: a safety net only, every event of interest wakes the parker earlier.
const MAX_WAIT: Duration = Duration::from_secs(1);

/// Deadlines are checked at most this often: a connection may outlive its timeout by this
/// much, and a table of ten thousand is not swept more than 100 times a second.
const SWEEP_GRANULARITY: Duration = Duration::from_millis(10);

/// Reports taken from one `epoll_wait`.
const EVENTS_PER_WAIT: usize = 256;

/// The token of the wake-up descriptor (a table slot's token is its index and generation, and
/// no slot has this generation).
const WAKE_TOKEN: u64 = u64::MAX;

/// The workers' side: park a connection, or stop the parker.
pub(super) struct ParkerHandle {
    shared: Arc<Shared>,
}

/// What the workers and the parker thread share.
struct Shared {
    ready: ReadySet,
    wake: Wakeup,
    table: Mutex<Table>,
    stop: AtomicBool,
    max_parked: usize,
    gauges: Arc<ConnGauges>,
}

/// The connections the parker knows, by slot: one slot per connection, from its first park
/// until it closes, because its socket stays in the `epoll` set all that time. A slot's
/// generation changes each time it is reused, so a late report for a connection that already
/// left never picks up the next one.
#[derive(Default)]
struct Table {
    slots: Vec<Slot>,
    free: Vec<u32>,
    parked: usize,
    idle: usize,
    /// The earliest deadline of any parked connection (or a moment no later than it).
    earliest: Option<Instant>,
    /// Until when the parker thread sleeps, while it does: a connection parked with an
    /// earlier deadline must wake it (a test's short timeout; a real one is longer than the
    /// parker's longest sleep).
    sleeping_until: Option<Instant>,
    /// Connections that must be served without waiting for their socket (bytes hidden in the
    /// stream, see `Conn::has_hidden_bytes`): handed to the parker thread by a wake-up.
    ready_now: Vec<Conn>,
}

#[derive(Default)]
struct Slot {
    generation: u32,
    state: SlotState,
}

#[derive(Default)]
enum SlotState {
    #[default]
    Free,
    /// Here, waiting for its socket.
    Parked(Conn),
    /// With a worker; `arrived` once the socket reported bytes meanwhile, which the worker
    /// may or may not have read: it looks again before it parks the connection.
    Out { arrived: bool },
}

/// What [`ParkerHandle::park`] did with a connection.
pub(super) enum Parked {
    /// Parked, or closed (the parker is stopping, or full).
    Done,
    /// Bytes arrived while the worker had it: read them before parking it.
    ServeAgain(Conn),
}

/// What [`Table::fill`] did.
enum Fill {
    /// Parked; `wake` if the parker must wake up to keep the connection's deadline.
    Parked { wake: bool },
    /// Not parked: bytes arrived while a worker had it.
    Arrived(Conn),
}

fn token(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

impl Table {
    /// A free slot and its new generation, for a connection parked for the first time.
    fn reserve(&mut self) -> (u32, u32) {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::default());
                u32::try_from(self.slots.len() - 1).unwrap_or(u32::MAX)
            }
        };
        let slot = &mut self.slots[index as usize];
        // Never u32::MAX, so no slot's token is WAKE_TOKEN.
        slot.generation = slot.generation.wrapping_add(1) % u32::MAX;
        slot.state = SlotState::Out { arrived: false };
        (index, slot.generation)
    }

    /// Parks `conn` in its slot, or gives it back if bytes arrived while a worker had it.
    fn fill(&mut self, index: u32, conn: Conn) -> Fill {
        let slot = &mut self.slots[index as usize];
        match slot.state {
            SlotState::Out { arrived: false } => {}
            SlotState::Out { arrived: true } => {
                slot.state = SlotState::Out { arrived: false };
                return Fill::Arrived(conn);
            }
            // Never: a connection is parked only by the worker that has it.
            SlotState::Free | SlotState::Parked(_) => return Fill::Arrived(conn),
        }
        self.parked += 1;
        if conn.head_since.is_none() {
            self.idle += 1;
        }
        let deadline = conn.deadline();
        self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
        slot.state = SlotState::Parked(conn);
        Fill::Parked {
            wake: self.sleeping_until.is_some_and(|until| deadline < until),
        }
    }

    /// A report for slot `index`: its connection if parked (now out with a worker); if a
    /// worker has it already, a note that bytes arrived.
    fn report(&mut self, index: u32, generation: u32) -> Option<Conn> {
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != generation {
            return None; // a connection that has closed since
        }
        match &mut slot.state {
            SlotState::Out { arrived } => {
                *arrived = true;
                None
            }
            SlotState::Parked(_) => self.remove(index),
            SlotState::Free => None,
        }
    }

    /// Takes the connection parked in slot `index` out of the table. Its slot stays reserved
    /// until the connection is dropped (see [`Watch`]).
    fn remove(&mut self, index: u32) -> Option<Conn> {
        let slot = self.slots.get_mut(index as usize)?;
        let conn = match std::mem::replace(&mut slot.state, SlotState::Out { arrived: false }) {
            SlotState::Parked(conn) => conn,
            other => {
                slot.state = other;
                return None;
            }
        };
        self.parked -= 1;
        if conn.head_since.is_none() {
            self.idle -= 1;
        }
        Some(conn)
    }

    /// Frees the slot of a connection that closed.
    fn release(&mut self, index: u32, generation: u32) {
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return;
        };
        // Only a connection that is out is dropped: a parked one is taken out first.
        if slot.generation == generation && matches!(slot.state, SlotState::Out { .. }) {
            slot.state = SlotState::Free;
            self.free.push(index);
        }
    }

    fn parked_conn(&self, index: usize) -> Option<&Conn> {
        match &self.slots[index].state {
            SlotState::Parked(conn) => Some(conn),
            _ => None,
        }
    }

    /// Takes every connection past its deadline, and notes the earliest remaining one.
    fn expired(&mut self, now: Instant) -> Vec<Conn> {
        let mut due = Vec::new();
        let mut earliest: Option<Instant> = None;
        for index in 0..self.slots.len() {
            let Some(deadline) = self.parked_conn(index).map(Conn::deadline) else {
                continue;
            };
            if deadline <= now {
                due.extend(self.remove(index as u32));
            } else {
                earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
            }
        }
        self.earliest = earliest;
        due
    }

    /// The longest-idle connection, when the table holds more than `max`.
    fn over_cap(&mut self, max: usize) -> Option<Conn> {
        if self.parked <= max {
            return None;
        }
        let oldest = (0..self.slots.len())
            .filter_map(|i| Some((i, self.parked_conn(i)?.idle_since)))
            .min_by_key(|&(_, since)| since)
            .map(|(i, _)| i)?;
        self.remove(oldest as u32)
    }
}

impl SlotOwner for Shared {
    fn release(&self, index: u32, generation: u32) {
        self.table().release(index, generation);
    }
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere with the lock held leaves a table that is still consistent enough
        // to close connections from.
        self.table
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn show(&self, table: &Table) {
        self.gauges.parked.store(table.parked, Ordering::Relaxed);
        self.gauges.idle.store(table.idle, Ordering::Relaxed);
    }
}

impl ParkerHandle {
    /// Hands an idle connection to the parker, unless bytes arrived for it while the worker
    /// had it ([`Parked::ServeAgain`]). If the parker is stopped, the connection is dropped,
    /// which closes it: a client must expect an idle keep-alive connection to close.
    pub(super) fn park(&self, mut conn: Conn) -> Parked {
        let shared = &self.shared;
        if shared.stop.load(Ordering::SeqCst) {
            close_quietly(conn);
            return Parked::Done;
        }
        // Bytes inside the stream would never make the socket readable: served at once.
        if conn.has_hidden_bytes() {
            shared.table().ready_now.push(conn);
            shared.wake.wake();
            return Parked::Done;
        }
        let mut table = shared.table();
        let index = match &conn.watch {
            Some(watch) => watch.index,
            None => {
                // Watched with the table locked: the parker cannot take a report before the
                // connection is in its slot. From now on the socket stays in the set.
                let (index, generation) = table.reserve();
                let fd = conn.stream.get_ref().as_fd();
                if let Err(err) = shared.ready.watch(fd, token(index, generation)) {
                    table.release(index, generation);
                    drop(table);
                    log::warn!("{}: parker cannot watch the connection: {err}", conn.peer);
                    close_quietly(conn);
                    return Parked::Done;
                }
                let weak: Weak<Shared> = Arc::downgrade(&self.shared);
                conn.watch = Some(Watch {
                    index,
                    generation,
                    table: weak,
                });
                index
            }
        };
        let wake = match table.fill(index, conn) {
            Fill::Parked { wake } => wake,
            Fill::Arrived(conn) => return Parked::ServeAgain(conn),
        };
        // Checked again under the lock: a parker that stopped meanwhile has closed what was
        // in the table, and would never see this one.
        let evicted = if shared.stop.load(Ordering::SeqCst) {
            table.remove(index)
        } else {
            table.over_cap(shared.max_parked)
        };
        shared.show(&table);
        drop(table);
        if wake {
            shared.wake.wake();
        }
        if let Some(conn) = evicted {
            log::debug!("{}: parked connections at the cap, closed", conn.peer);
            close_quietly(conn);
        }
        Parked::Done
    }

    pub(super) fn stop(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake.wake();
    }
}

/// The parker's side, until its thread starts.
pub(super) struct Parker {
    shared: Arc<Shared>,
}

impl Parker {
    /// A parker and the handle that feeds it; nothing runs until [`Parker::spawn`].
    pub(super) fn new(
        max_parked: usize,
        gauges: Arc<ConnGauges>,
    ) -> io::Result<(ParkerHandle, Parker)> {
        let shared = Arc::new(Shared {
            ready: ReadySet::new()?,
            wake: Wakeup::new()?,
            table: Mutex::new(Table::default()),
            stop: AtomicBool::new(false),
            max_parked: max_parked.max(1),
            gauges,
        });
        // Reported at every wake-up, like a connection at every arrival.
        shared.ready.watch(shared.wake.as_fd(), WAKE_TOKEN)?;
        let handle = ParkerHandle {
            shared: Arc::clone(&shared),
        };
        Ok((handle, Parker { shared }))
    }

    /// Starts the parker thread; `ready` receives each connection whose next request arrived
    /// (or whose client closed: a worker finds that out in one read).
    pub(super) fn spawn<F>(self, ready: F) -> io::Result<()>
    where
        F: Fn(Conn) + Send + 'static,
    {
        thread::Builder::new()
            .name("parker".to_owned())
            .spawn(move || self.run(ready))
            .map(drop)
    }

    fn run<F: Fn(Conn)>(self, ready: F) {
        let shared = &*self.shared;
        let mut tokens = Vec::with_capacity(EVENTS_PER_WAIT);
        let mut next_sweep = Instant::now();
        while !shared.stop.load(Ordering::SeqCst) {
            let now = Instant::now();
            let timeout = {
                let mut table = shared.table();
                let timeout = table
                    .earliest
                    .map(|e| e.max(next_sweep).saturating_duration_since(now))
                    .unwrap_or(MAX_WAIT)
                    .min(MAX_WAIT);
                table.sleeping_until = Some(now + timeout);
                timeout
            };
            tokens.clear();
            if let Err(err) = shared.ready.wait(&mut tokens, EVENTS_PER_WAIT, timeout) {
                // Nothing transient is expected here; pause rather than spin if it happens.
                log::error!("parker: epoll_wait failed: {err}");
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            let mut woken = Vec::with_capacity(tokens.len());
            {
                let mut table = shared.table();
                table.sleeping_until = None;
                for &token in &tokens {
                    if token == WAKE_TOKEN {
                        shared.wake.clear();
                        woken.append(&mut table.ready_now);
                    } else {
                        woken.extend(table.report(token as u32, (token >> 32) as u32));
                    }
                }
                shared.show(&table);
            }
            woken.into_iter().for_each(&ready);
            let now = Instant::now();
            let due = {
                let mut table = shared.table();
                if now < next_sweep || table.earliest.is_none_or(|e| e > now) {
                    Vec::new()
                } else {
                    next_sweep = now + SWEEP_GRANULARITY;
                    let due = table.expired(now);
                    shared.show(&table);
                    due
                }
            };
            due.into_iter().for_each(expire);
        }
        // Stopped: every parked connection closes now (a drain), and any parked later is
        // closed by `park` itself.
        let left: Vec<Conn> = {
            let mut table = shared.table();
            let mut left: Vec<Conn> = table.ready_now.drain(..).collect();
            for index in 0..table.slots.len() {
                left.extend(table.remove(index as u32));
            }
            shared.show(&table);
            left
        };
        left.into_iter().for_each(close_quietly);
    }
}

/// Ends a connection whose wait is over: an idle one, or one still in its TLS handshake, is
/// just closed (as nginx does); one that started a head and did not finish it in time gets
/// `408`, as from a worker reading it.
fn expire(conn: Conn) {
    let peer = conn.peer;
    if conn.handshake_deadline().is_some() {
        log::debug!("{peer}: TLS handshake not finished in time, closed");
        return close_quietly(conn);
    }
    if conn.head_since.is_none() {
        log::debug!("{peer}: idle keep-alive connection closed");
        return close_quietly(conn);
    }
    log::debug!("{peer}: request head not finished in time");
    let handler = conn.handler;
    let (stream, _) = conn.stream.into_parts();
    refuse_now(stream, peer, &Reply::error(408), &*handler);
}

/// Closes a parked connection without ever blocking the parker (a TLS stream still says
/// `close_notify`).
fn close_quietly(mut conn: Conn) {
    if conn.stream.get_ref().set_nonblocking(true).is_ok() {
        conn.stream.finish();
    }
}

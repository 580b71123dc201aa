//! A bounded shelf of things that are costly to make and cheap to reuse (compressors and
//! their buffers, connections to Redis), shared by the workers: a request takes one when
//! there is one of the kind it needs, and gives it back when done.

use std::sync::{Mutex, MutexGuard};

pub struct Stock<T> {
    shelf: Mutex<Vec<T>>,
    max: usize,
}

impl<T> Stock<T> {
    /// A shelf that keeps at most `max` things; more given back are dropped.
    pub const fn new(max: usize) -> Stock<T> {
        Stock {
            shelf: Mutex::new(Vec::new()),
            max,
        }
    }

    /// The most recently given thing that is `wanted` (the most likely still in a cache).
    pub fn take(&self, wanted: impl FnMut(&T) -> bool) -> Option<T> {
        let mut shelf = self.shelf();
        let found = shelf.iter().rposition(wanted);
        found.map(|i| shelf.swap_remove(i))
    }

    /// Whether a thing given now would be kept: lets the giver skip the work of readying it.
    pub fn has_room(&self) -> bool {
        self.shelf().len() < self.max
    }

    pub fn give(&self, thing: T) {
        let mut shelf = self.shelf();
        if shelf.len() < self.max {
            shelf.push(thing);
        }
    }

    /// The shelf holds no invariant a panicking holder could break, so a poisoned lock is
    /// taken as it is.
    fn shelf(&self) -> MutexGuard<'_, Vec<T>> {
        self.shelf
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_of_the_wanted_kind_is_taken_and_the_shelf_stays_bounded() {
        let stock = Stock::new(3);
        for n in [1, 2, 11, 4] {
            stock.give(n);
        }
        assert!(!stock.has_room(), "the fourth was dropped");
        assert_eq!(stock.take(|n| n % 2 == 1), Some(11));
        assert_eq!(stock.take(|n| *n == 4), None, "never kept");
        assert!(stock.has_room());
        assert_eq!(stock.take(|_| true), Some(2));
        assert_eq!(stock.take(|_| true), Some(1));
        assert_eq!(stock.take(|_| true), None);
    }
}

//! Stage 4: a fixed pool of workers with a bounded queue, and idle connections parked.

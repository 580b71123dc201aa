//! The floor of the model for an HTTP proxy: the blocking relay of `blocking_floor` that also
//! parses each request head and each response head, the least any HTTP proxy reads
//! (`examples/floor/mod.rs`). Stage 5's cost above it is its own HTTP work beyond the parse,
//! and its hand-off of idle connections.
//!
//!     cargo build --release --example parsing_floor
//!     target/release/examples/parsing_floor --listen 127.0.0.1:18082 --backend 127.0.0.1:19001

mod floor;

fn main() {
    let parse_heads = true;
    floor::run("parsing_floor", parse_heads);
}

//! The floor of the model with no HTTP at all: a blocking relay, a thread per connection
//! (`examples/floor/mod.rs` has the whole story).
//!
//!     cargo build --release --example blocking_floor
//!     target/release/examples/blocking_floor --listen 127.0.0.1:18082 --backend 127.0.0.1:19001

mod floor;

fn main() {
    let parse_heads = false;
    floor::run("blocking_floor", parse_heads);
}

//! Stage 1: one connection at a time, one backend, real HTTP framing (`http.rs`).
//!
//! Run: `cargo run -p workbook-solutions --bin solution-stage1 -- --listen 127.0.0.1:8080
//! --backend 127.0.0.1:8000`. Known limit: while one client keeps its connection open, the
//! next one waits (stage 2 fixes that).

use workbook_solutions::{bind, http, init_logging, Args};

const USAGE: &str = "usage: solution-stage1 [--listen ADDR] [--backend ADDR]
       [--upstream-timeout 10s] [--log-level LEVEL]";

fn main() {
    let args = Args::parse(USAGE);
    init_logging(args.log_level);
    let listener = bind("stage1", &args.listen);
    let (backend, timeout) = (args.backends[0], args.upstream_timeout);
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => http::serve_connection(stream, &|| http::connect(backend, timeout)),
            Err(e) => log::warn!("accept: {e}"),
        }
    }
}

//! A negative control for the grader's own tests (not a tool): a workbook skeleton that has
//! not been written yet. It listens, and the first connection hits a `todo!()`, so the
//! program exits with status 101, as an untouched stage would.
//!
//! `control-todo --listen 127.0.0.1:PORT --backend 127.0.0.1:PORT`; other flags ignored.

use std::net::TcpListener;

fn main() {
    let (listen, _) = grade::controls::listen_and_backend();
    let listener = TcpListener::bind(&listen).expect("bind");
    // The grader's readiness probe is the first connection; the first request comes after it.
    let mut seen = 0;
    for _ in listener.incoming() {
        seen += 1;
        if seen == 2 {
            todo!("read the request head (workbook stage 1, step 1)");
        }
    }
}

//! What the negative-control programs (`src/bin/control-*.rs`, used by the grader's own tests)
//! share: reading `--listen ADDR --backend ADDR` and ignoring every other flag.

/// `(listen, backend)` from the command line; defaults 127.0.0.1:8080 and 127.0.0.1:8000.
pub fn listen_and_backend() -> (String, String) {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    (
        value("--listen", "127.0.0.1:8080"),
        value("--backend", "127.0.0.1:8000"),
    )
}

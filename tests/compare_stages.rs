//! The load tester's `compare` over the real stages, and the proxy accepting the config file
//! it writes. These live with the proxy, not with the tester: the tester's crate does not build
//! the stages (it shares nothing with what it measures), this package does.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use clap::Parser;
use loadtest::cli::{Cli, Command, CompareArgs};
use loadtest::compare;

/// `loadtest compare ...` as the binary would read it.
fn compare_args(args: &[&str]) -> CompareArgs {
    let cli = Cli::try_parse_from(std::iter::once("loadtest").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{e}"));
    match cli.command {
        Some(Command::Compare(args)) => args,
        None => panic!("not a compare command: {args:?}"),
    }
}

/// An origin on port 0 that answers every request `ok` with keep-alive, on a thread per
/// connection, and counts the requests. Returns its URL and the count.
fn start_counting_server(max_connections: usize) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let port = listener.local_addr().expect("local addr").port();
    let served = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&served);
    thread::spawn(move || {
        for stream in listener.incoming().take(max_connections) {
            let Ok(stream) = stream else { continue };
            let served = Arc::clone(&served);
            thread::spawn(move || serve_ok(stream, &served));
        }
    });
    (format!("http://127.0.0.1:{port}/"), counted)
}

/// Reads heads (no request bodies come here) and answers each; ends with the connection.
fn serve_ok(stream: TcpStream, served: &AtomicU64) {
    let timeout = Some(Duration::from_secs(10));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    // Bounded by the client closing and the read timeout.
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => {
                served.fetch_add(1, Ordering::Relaxed);
                let answer =
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Backend-Server: t\r\n\r\nok";
                if writer.write_all(answer).is_err() {
                    return;
                }
            }
            Ok(_) => {}
        }
    }
}

#[test]
fn the_proxy_accepts_the_config_file_compare_writes() {
    let backends = [
        SocketAddr::from(([127, 0, 0, 1], 8001)),
        SocketAddr::from(([127, 0, 0, 1], 8002)),
    ];
    let text = compare::config_toml(18282, &backends);
    let settings = revproxy::config::parse(&text, Path::new("proxy.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let _ = settings;
}

/// `compare --layers` end to end with real stages: stage4 started with flags, stage9 with the
/// configuration compare writes, stage2 forking a process per connection, each row with its
/// CPU per request (stage2's summed over its process group). The demo backends are
/// another crate's binary, not built for this test, so `backends` here is a script that says
/// it listens where a server of this test does (one per name), and stays up like the real one.
#[test]
fn compare_layers_measures_flag_and_config_stages_with_their_cpu() {
    use std::os::unix::fs::PermissionsExt;

    let dir = std::env::temp_dir().join(format!("loadtest-layers-{}", std::process::id()));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    for (name, exe) in [
        ("stage4", env!("CARGO_BIN_EXE_stage4")),
        ("stage9", env!("CARGO_BIN_EXE_stage9")),
        ("stage2", env!("CARGO_BIN_EXE_stage2")),
    ] {
        let link = bin.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(exe, &link).expect("link the stage");
    }
    // Called as `backends --port 0 --name bN --delay-ms 0`.
    let mut script = String::from("#!/bin/sh\ncase \"$4\" in\n");
    let mut served = Vec::new();
    for i in 1..=3 {
        let (url, count) = start_counting_server(100_000);
        let port = url.trim_end_matches('/').rsplit(':').next().expect("port");
        script.push_str(&format!("  b{i}) port={port} ;;\n"));
        served.push(count);
    }
    script.push_str(
        "  *) echo \"no backend $4\" >&2; exit 2 ;;\nesac\n\
         echo \"backend $4 listening on http://127.0.0.1:$port\"\nexec sleep 60\n",
    );
    let backends = bin.join("backends");
    std::fs::write(&backends, script).expect("write the backends script");
    std::fs::set_permissions(&backends, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let out = dir.join("out");
    let path = |p: &std::path::Path| p.to_str().expect("a UTF-8 temp path").to_string();
    // One second a cell: long enough for the stage's CPU to pass the ten clock ticks a figure
    // needs (compare says "-" below them), even on a busy machine.
    let args = compare_args(&[
        "compare",
        "--layers",
        "-z",
        "1s",
        "--stages",
        "stage4,stage9,stage2",
        "--bin-dir",
        &path(&bin),
        "--out",
        &path(&out),
    ]);
    let stop = AtomicBool::new(false);
    compare::run_command(&args, &stop).unwrap_or_else(|e| panic!("compare failed: {e}"));

    let md = std::fs::read_to_string(out.join("compare.md")).expect("compare.md");
    println!("{md}");
    assert!(md.contains("What each layer adds"), "{md}");
    let rows: Vec<Vec<&str>> = md
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    let column = |name: &str| {
        rows[0]
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no {name:?} column in\n{md}"))
    };
    let (cpu, switches) = (column("CPU µs/request"), column("context switches/request"));
    let vs = column("vs stage4");
    // Keep-alive only, c=64, no slow-client row: one row per stage.
    let stages: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(stages, ["stage4", "stage9", "stage2"], "{md}");
    for row in &rows[1..] {
        assert_eq!((row[1], row[2]), ("on", "64"), "{md}");
        let us: f64 = row[cpu]
            .parse()
            .unwrap_or_else(|_| panic!("CPU {:?} is not a number in\n{md}", row[cpu]));
        assert!(us.is_finite() && us >= 0.0, "{md}");
        assert!(row[vs].ends_with('×'), "{md}");
    }
    assert_eq!(rows[1][vs], "1.00×", "{md}");
    // Threads' switches are summed; a child's are gone with it, so stage2 says "-".
    assert!(rows[1][switches].parse::<f64>().is_ok(), "{md}");
    assert_eq!(rows[3][switches], "-", "{md}");

    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("compare.json")).expect("compare.json"),
    )
    .expect("JSON");
    for cell in report["cells"].as_array().expect("cells") {
        assert!(cell["failure"].is_null(), "{cell}");
        assert!(cell["responses"].as_u64().is_some_and(|n| n > 0), "{cell}");
        assert!(cell["cpu_us_per_request"].is_f64(), "{cell}");
    }
    // stage9 read the file compare wrote: all three backends, where stage4 only knows b1.
    let config = std::fs::read_to_string(out.join("proxy.toml")).expect("proxy.toml");
    assert!(config.contains("[upstreams.app]"), "{config}");
    for (i, count) in served.iter().enumerate() {
        assert!(count.load(Ordering::Relaxed) > 0, "b{} got nothing", i + 1);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

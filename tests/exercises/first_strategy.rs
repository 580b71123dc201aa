//! Chapter 05, exercise: `--strategy first`, HAProxy's `balance first`: every request goes to
//! the first backend in the list that may serve it, so the others stay idle (and can be
//! switched off) until it fails. Solution: `solutions/05-first-strategy.patch`.

use crate::support::{backend, dead_addr, Proxy};

const STAGE5: &str = env!("CARGO_BIN_EXE_stage5");

fn start(backends: &[String]) -> Proxy {
    let mut args = vec!["--strategy".to_owned(), "first".to_owned()];
    for b in backends {
        args.push("--backend".to_owned());
        args.push(b.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proxy::start(STAGE5, &[], &args)
}

/// Which backend served each of `n` requests, one after another on one connection.
fn served_by(proxy: &Proxy, n: usize) -> Vec<String> {
    let mut c = proxy.connect();
    (0..n)
        .map(|_| {
            c.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
            let res = c.read_response("GET");
            assert_eq!(res.status, 200);
            res.header("x-backend-server")
                .expect("X-Backend-Server")
                .to_owned()
        })
        .collect()
}

#[test]
#[ignore = "exercise (chapter 05): --strategy first"]
fn first_strategy_sends_everything_to_the_first_backend() {
    let bs = [backend("b1"), backend("b2"), backend("b3")];
    let addrs: Vec<String> = bs.iter().map(|b| b.addr().to_string()).collect();
    let p = start(&addrs);
    assert_eq!(served_by(&p, 6), vec!["b1"; 6]);
}

#[test]
#[ignore = "exercise (chapter 05): --strategy first"]
fn first_strategy_moves_on_when_the_first_refuses() {
    let (b2, b3) = (backend("b2"), backend("b3"));
    let addrs = vec![
        dead_addr().to_string(),
        b2.addr().to_string(),
        b3.addr().to_string(),
    ];
    let p = start(&addrs);
    assert_eq!(served_by(&p, 6), vec!["b2"; 6]);
}

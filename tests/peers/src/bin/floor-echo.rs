//! The least a server can spend on a connection, for bench.sh to measure the others against:
//! N threads (the argument, 1 if none) each blocked in `accept` and serving what it accepts,
//! one connection at a time: no hand-off between threads, no thread started, no registry, no
//! socket options. With one thread, nothing but the connection's own system calls. Not a
//! server anyone should run: one slow client holds a thread, N of them hold them all.
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;

fn main() -> std::io::Result<()> {
    let threads: usize = std::env::args()
        .nth(1)
        .map_or(1, |n| n.parse().expect("a thread count"));
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0")?);
    println!("listening on {}", listener.local_addr()?);
    let serve = move || {
        let mut buf = [0u8; 4096];
        loop {
            let Ok((mut stream, _)) = listener.accept() else {
                continue;
            };
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                buf[..n].make_ascii_uppercase();
                if stream.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    };
    for _ in 1..threads {
        std::thread::spawn(serve.clone());
    }
    serve()
}

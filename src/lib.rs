//! tcpdemo: a TCP server that echoes what it receives, ASCII-uppercased; its client; and a load
//! generator that measures any echo server. Public is what the binary (`main.rs`) uses; the
//! rest is the crate's own, so the compiler sees what is dead.

pub mod addr;
pub mod bench;
pub mod cli;
pub mod client;
pub mod echo;
mod link;
pub mod logger;
mod numbers;
pub mod output;
mod platform;
pub mod proxy;
pub mod server;
mod stall;
pub mod stop;
pub mod tls;
mod workers;

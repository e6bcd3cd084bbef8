//! tcpdemo: a TCP server that echoes what it receives, ASCII-uppercased; its client; and a load
//! generator that measures any echo server. The modules are public so tests can reach them.

pub mod addr;
pub mod bench;
pub mod cli;
pub mod client;
pub mod echo;
pub mod logger;
pub mod numbers;
pub mod output;
pub mod platform;
pub mod proxy;
pub mod server;
pub mod stall;
mod workers;

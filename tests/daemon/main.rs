//! `iocd run` as operators run it: the real binary, real sockets on
//! loopback, real files and signals. Tests wait on events (a log line, a
//! hit line) with bounded timeouts, never on sleeps.

#[path = "../common/mod.rs"]
mod common;

mod analyst;
mod harness;
mod retro;
mod tests;
mod url_feeds;

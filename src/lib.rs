//! iocd: indicator-of-compromise matching.
//!
//! Data flows one way. [`feeds`] read indicator files into [`indicator`]s;
//! the [`engine`] is built from them and scans log lines; [`hit`] encodes
//! what it finds. [`scan`] is the batch command that joins them. The daemon
//! ([`daemon`]) runs [`sources`] → [`pipeline`] → [`sinks`], with [`reload`]
//! keeping the engine current, [`metrics`] beside them and [`config`]
//! describing it all.

#![warn(missing_docs)]

pub(crate) mod backoff;
pub mod config;
pub mod context;
pub mod daemon;
pub mod engine;
pub mod exit;
pub mod explain;
pub mod feeds;
pub(crate) mod fetch;
pub mod hit;
pub(crate) mod http_client;
pub mod indicator;
pub(crate) mod kafka;
pub mod lines;
pub mod load;
pub(crate) mod metrics;
pub(crate) mod nats;
pub(crate) mod pipeline;
pub mod probe;
pub(crate) mod reload;
pub(crate) mod remote;
pub(crate) mod retro;
pub mod scan;
pub(crate) mod settings;
pub(crate) mod sightings;
pub(crate) mod sinks;
pub(crate) mod sources;
pub(crate) mod state;
pub mod suppress;
pub(crate) mod systemd;
pub mod taxii;
pub mod time;

pub use engine::{Engine, EngineOptions, Match, ScanState};
pub use indicator::{Indicator, IndicatorType, Provenance};

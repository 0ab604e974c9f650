//! iocd: indicator-of-compromise matching.
//!
//! Data flows one way: [`feeds`] read indicator files into [`indicator`]s;
//! the [`engine`] is built from them and scans log lines; [`hit`] encodes
//! what it finds; [`scan`] is the batch command that joins them.

pub mod engine;
pub mod feeds;
pub mod hit;
pub mod indicator;
pub mod load;
pub mod scan;

pub use engine::{Engine, EngineOptions, Match, ScanState};
pub use indicator::{Indicator, IndicatorType, Provenance};

//! Context from a line: the syslog header and JSON field readers must be
//! total on any bytes, and a field found must hold the span asked about.
#![no_main]

use iocd::context::{JsonLeaves, SyslogHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for need_pri in [false, true] {
        if let Some(h) = SyslogHeader::parse(data, need_pri) {
            assert!(h.priority.map_or(true, |p| p <= 191));
        }
    }
    if let Some(leaves) = JsonLeaves::parse(data) {
        let _ = leaves.field(0, data.len());
        let _ = leaves.field(data.len() / 2, data.len() / 2 + 1);
    }
});

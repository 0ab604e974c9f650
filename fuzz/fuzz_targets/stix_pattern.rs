//! The STIX pattern parser over arbitrary text: it must answer (indicators
//! or a reason), never panic, and what it returns must be canonical.
#![no_main]

use iocd::feeds::stix::pattern;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for p in [
        text.to_string(),
        format!("[ipv4-addr:value = '{text}']"),
        format!("[file:hashes.'SHA-256' IN ('{text}')]"),
    ] {
        if let Ok(found) = pattern::indicators(&p) {
            for (kind, value) in found {
                assert!(
                    !value.is_empty() || kind == iocd::IndicatorType::Regex,
                    "{p:?}"
                );
            }
        }
    }
});

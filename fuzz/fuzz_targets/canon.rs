//! Canonicalisation of feed values: classify, typed and refang must be total,
//! and a classified value must classify to itself again (idempotence), so a
//! value read twice is the same indicator.
#![no_main]

use iocd::indicator::canon::{classify, refang, typed, TypeHint};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let v = String::from_utf8_lossy(data);
    let _ = refang(&v);
    for name in [
        "ip",
        "hash",
        "domain-name",
        "email-addr",
        "url",
        "string",
        "regex",
    ] {
        let hint = TypeHint::from_name(name).expect("a type name");
        let _ = typed(hint, &v);
    }
    if let Some((kind, canon)) = classify(&v) {
        if kind != iocd::IndicatorType::String {
            let again = classify(&canon).expect("canonical value classifies");
            assert_eq!(again, (kind, canon.clone()), "not idempotent for {v:?}");
        }
    }
});

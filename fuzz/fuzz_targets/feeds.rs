//! Every feed reader (plain, Zeek, CSV, warninglist, STIX, MISP) over arbitrary bytes: parse as detected, then force
//! each format's reader through detection by prefixing its marker, build an
//! engine from whatever came out, and use the result as an allowlist.
#![no_main]

use std::path::Path;

use iocd::feeds::{self, allowlist::Allowlist};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let forced = [
        text.to_string(),
        format!("#fields\tindicator\tindicator_type\tmeta.source\n{text}"),
        format!("value,type,tags\n{text}"),
        format!("{{\"name\":\"x\",\"type\":\"cidr\",\"list\":[{text}]}}"),
        format!("{{\"type\":\"bundle\",\"objects\":[{{\"type\":\"indicator\",\"id\":\"indicator--1\",\"pattern\":{}}}, {text}]}}", serde_json::to_string(&*text).unwrap()),
        format!("<?xml version=\"1.0\"?><ioc><definition><IndicatorItem condition=\"is\"><Context search=\"Network/DNS\"/><Content>{text}</Content></IndicatorItem>{text}</definition></ioc>"),
        format!("{{\"Event\":{{\"uuid\":\"u\",\"Attribute\":[{{\"type\":\"ip-dst\",\"to_ids\":true,\"value\":{}}}, {text}]}}}}", serde_json::to_string(&*text).unwrap()),
    ];
    let parsed: Vec<_> = forced
        .iter()
        .map(|t| feeds::parse("fuzz", Path::new("fuzz"), t))
        .collect();
    let allow = Allowlist::new(&parsed);
    for feed in parsed {
        let mut inds = feed.indicators;
        allow.apply(&mut inds);
        let _ = iocd::Engine::build(inds, &Default::default());
    }
});

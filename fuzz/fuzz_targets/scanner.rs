//! The engine's scan over arbitrary lines, with one indicator of every kind
//! loaded; hit ranges must stay inside the line.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use iocd::{feeds, Engine, ScanState};
use libfuzzer_sys::fuzz_target;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        let feed = "198.51.100.7\n203.0.113.0/24\n2001:db8::7\n2001:db8:aa::/48\nmalware.example\n\
                    http://dl.example/a.exe\nurl\tdl.example/b\nceo@phish.example\n\
                    44d88612fea8a8f36de82e1278abb02f\nEvilMutex\nregex\tcmd\\.exe /[ck]\n";
        Engine::build(
            feeds::parse("f", Path::new("f"), feed).indicators,
            &Default::default(),
        )
        .unwrap()
    })
}

fuzz_target!(|line: &[u8]| {
    let mut st = ScanState::new();
    for m in engine().scan(line, &mut st) {
        assert!(m.start <= m.end && m.end as usize <= line.len());
    }
});

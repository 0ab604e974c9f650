//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use iocd::{feeds, Engine, EngineOptions, ScanState};

/// Builds an engine from plain-list feed text (one feed named `t`).
pub fn engine(feed: &str) -> Engine {
    engine_with(feed, &EngineOptions::default())
}

pub fn engine_with(feed: &str, options: &EngineOptions) -> Engine {
    let f = feeds::parse("t", Path::new("t"), feed);
    Engine::build(f.indicators, options)
}

/// The (type, value) of every hit of `line`, sorted.
pub fn hits(engine: &Engine, line: &[u8]) -> Vec<(String, String)> {
    let mut st = ScanState::new();
    let mut v: Vec<(String, String)> = engine
        .scan(line, &mut st)
        .iter()
        .map(|m| {
            let i = engine.indicator(m.indicator);
            (i.kind.as_str().to_owned(), i.value.to_string())
        })
        .collect();
    v.sort();
    v
}

/// `../shared` beside the repository, when this checkout has one.
pub fn shared_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared");
    p.join("spec/MATCHING.md").exists().then_some(p)
}

#[allow(dead_code)] // not every test binary reads them
/// One worked case of `../shared/spec/cases.jsonl`: its name, feed lines,
/// log line and expected hits (as JSON).
pub struct Case {
    pub name: String,
    pub feed: Vec<String>,
    pub line: String,
    pub hits: Vec<serde_json::Value>,
}

/// The shared worked cases, in file order, when `../shared` is present.
#[allow(dead_code)] // not every test binary reads them
pub fn shared_cases() -> Option<Vec<Case>> {
    let text = std::fs::read_to_string(shared_dir()?.join("spec/cases.jsonl")).unwrap();
    let str_ = |v: &serde_json::Value| v.as_str().unwrap().to_owned();
    Some(
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let c: serde_json::Value = serde_json::from_str(l).unwrap();
                Case {
                    name: str_(&c["name"]),
                    feed: c["feed"].as_array().unwrap().iter().map(str_).collect(),
                    line: str_(&c["line"]),
                    hits: c["hits"].as_array().unwrap().clone(),
                }
            })
            .collect(),
    )
}

/// Says loudly that a test did not run its body, and why; under
/// `IOCD_REQUIRE_SERVERS=1` (set by `.ci/run`) a test that cannot run fails.
pub fn skipped(test: &str, why: &str) {
    if std::env::var("IOCD_REQUIRE_SERVERS").as_deref() == Ok("1") {
        panic!("{test} cannot run and IOCD_REQUIRE_SERVERS=1: {why}");
    }
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
}

/// The built `iocd` binary.
pub fn iocd() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_iocd"))
}

/// A fresh, empty directory for one test, under Cargo's target tmp dir.
pub fn test_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The smallest daemon config around `rest` (sources, sinks, settings):
/// one feed, named `test`, at `feed`.
pub fn minimal_config(feed: &Path, rest: &str) -> String {
    format!(
        "[feeds.test]\npath = {:?}\n{rest}",
        feed.display().to_string()
    )
}

/// `iocd check --config CONFIG`, run to its end.
pub fn check(config: &Path) -> std::process::Output {
    iocd()
        .args(["check", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// True when the peer tool `name` can be run; said loudly (or failed, under
/// `IOCD_REQUIRE_SERVERS=1`) when it cannot.
pub fn installed(name: &str, test: &str) -> bool {
    let ok = std::process::Command::new(name)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !ok {
        skipped(test, &format!("{name} is not installed"));
    }
    ok
}

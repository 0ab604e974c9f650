//! The `iocd` command line: maps subcommands to the library and errors to
//! exit codes (sysexits): 0 done, 2 usage, 65 unreadable feed data,
//! 66 unreadable input, 70 drain timeout, 71 cannot open a socket or file,
//! 78 bad configuration.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use iocd::config::{Config, LogFormat, LogLevel};
use iocd::engine::EngineOptions;
use iocd::exit::Exit;
use iocd::load::{FeedConfig, LoadPlan, Loader};
use iocd::scan::{scan_stream, ScanError, ScanOptions, DEFAULT_MAX_LINE};
use iocd::taxii::TaxiiConfig;

#[derive(Parser)]
#[command(
    name = "iocd",
    version,
    about = "Match log lines against indicators of compromise"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan log files (or stdin) and write one JSON hit per line to stdout.
    Scan(ScanArgs),
    /// Run the daemon: sources in, hits to sinks, feeds hot-reloaded.
    Run(ConfigArgs),
    /// Validate a configuration and load every feed, printing counts.
    Check(CheckArgs),
    /// Show the tokens cut from a line and, for each, the indicators that
    /// matched it or why none did.
    Explain(ExplainArgs),
    /// Say which feeds hold a value, or why it is not active.
    Lookup(LookupArgs),
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML configuration; without it, stdin in, hits on stdout and the
    /// built-in example feed.
    #[arg(long, short = 'c', value_name = "FILE", env = "IOCD_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CheckArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Also reach every Kafka and NATS broker the configuration names and
    /// say what is missing (a topic, a stream).
    #[arg(long)]
    connect: bool,
}

#[derive(clap::Args, Clone)]
/// Which feeds to load, as `scan`, `explain` and `lookup` take them.
struct FeedArgs {
    /// Indicator feed: a file, a directory of files, or a TAXII 2.1
    /// collection URL (credentials from IOCD_TAXII_USER/IOCD_TAXII_PASSWORD or
    /// IOCD_TAXII_TOKEN); repeatable. Without one, the example feed built
    /// into iocd (deploy/examples/feeds/).
    #[arg(long = "indicators", short = 'i', value_name = "PATH")]
    indicators: Vec<PathBuf>,
    /// Allowlist removing indicators at load time: any feed format or a MISP
    /// warninglist, a file or a directory (repeatable).
    #[arg(long = "allowlist", value_name = "PATH")]
    allowlists: Vec<PathBuf>,
    /// Bloom filter in front of exact sets of at least this many keys (0: never).
    #[arg(long, value_name = "KEYS", default_value_t = EngineOptions::default().bloom_min_keys)]
    bloom_min_keys: usize,
    /// Load MISP attributes not marked `to_ids` too (default: `to_ids` only).
    #[arg(long)]
    misp_all_attributes: bool,
    /// Load addresses in special-purpose space (private, loopback, ...) from
    /// the feeds: for internal lists of compromised hosts.
    #[arg(long)]
    allow_special_addresses: bool,
    /// Only files below a feed folder that match this glob are feeds
    /// (repeatable; overrides the default excludes of README, LICENSE, *.md, ...).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Files below a feed folder that match this glob are not feeds (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Read every feed as this format instead of detecting it (plain,
    /// zeek-intel, csv, stix, misp, misp-warninglist, openioc).
    #[arg(long, value_name = "FORMAT")]
    feed_format: Option<iocd::feeds::Format>,
    /// Print no load summary on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(clap::Args)]
struct ScanArgs {
    #[command(flatten)]
    feeds: FeedArgs,
    /// Feeds as they were before (repeatable): scan only for indicators
    /// of `--indicators` that these do not have (a retro-hunt over
    /// archived logs; gzip and zstd files are read as they are).
    #[arg(long = "since-indicators", value_name = "PATH")]
    since_indicators: Vec<PathBuf>,
    /// Longest line scanned, in bytes; longer lines are scanned up to it.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_LINE)]
    max_line_bytes: usize,
    /// Matcher threads (default: one per core).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// The hits' shape, as a sink's `format`: native or ecs.
    #[arg(long, value_name = "FORMAT", default_value = "native", value_parser = parse_hit_format)]
    format: iocd::hit::HitFormat,
    /// One document per hit (hit), or per line with every indicator that
    /// matched it (line), as `[output] group`.
    #[arg(long, value_name = "GROUP", default_value = "hit", value_parser = parse_grouping)]
    group: iocd::hit::Grouping,
    /// Put the line in each hit as `event.original`.
    #[arg(long)]
    with_line: bool,
    /// Read lines for context as a source's `parse`: none, syslog, auto, json.
    #[arg(long, value_name = "FORMAT", default_value = "none", value_parser = parse_line_format)]
    parse: iocd::context::LineFormat,
    /// Log files to scan; stdin when none (or `-`).
    files: Vec<PathBuf>,
}

#[derive(clap::Args)]
/// The feeds `explain` and `lookup` ask about: a config's, or `-i`'s.
struct InspectArgs {
    /// Load the feeds and allowlists of this configuration instead of `-i`.
    #[arg(long, short = 'c', value_name = "FILE", conflicts_with = "indicators")]
    config: Option<PathBuf>,
    #[command(flatten)]
    feeds: FeedArgs,
    /// Answer in JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// The line to explain, or `-` for every line of stdin.
    line: String,
}

#[derive(clap::Args)]
struct LookupArgs {
    #[command(flatten)]
    inspect: InspectArgs,
    /// The value: an address, network, domain, URL, email or hash (defanged is fine).
    value: String,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Scan(args) => scan(args),
        Command::Run(args) => run(args),
        Command::Check(args) => check(args),
        Command::Explain(args) => explain(args),
        Command::Lookup(args) => lookup(args),
    }
}

fn load_config(args: &ConfigArgs) -> Result<Config, ExitCode> {
    match &args.config {
        Some(path) => Config::load(path).map_err(|e| {
            eprintln!("iocd: error: {e}");
            Exit::Config.into()
        }),
        None => Ok(Config::embedded_default()),
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::filter::LevelFilter;
    let level = match config.log.level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
        LogLevel::Trace => LevelFilter::TRACE,
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_max_level(level)
        .with_target(false);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

fn run(args: ConfigArgs) -> ExitCode {
    let config = match load_config(&args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    init_logging(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("iocd-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("iocd: error: cannot start the runtime: {e}");
            return Exit::OsErr.into();
        }
    };
    let code = runtime.block_on(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int), Ok(mut hup), Ok(mut usr1)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) else {
            eprintln!("iocd: error: cannot install signal handlers");
            return Exit::OsErr.into();
        };
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let (reopen_tx, reopen_rx) = tokio::sync::watch::channel(0u64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    Some(()) = hup.recv() => {
                        tracing::info!("SIGHUP: reloading configuration and feeds");
                        let _ = reload_tx.try_send(());
                    }
                    Some(()) = usr1.recv() => {
                        tracing::info!("SIGUSR1: reopening hit files");
                        reopen_tx.send_modify(|g| *g += 1);
                    }
                }
            }
        });
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        };
        let controls = iocd::daemon::Controls {
            reload: reload_rx,
            reopen: reopen_rx,
            ready: None,
        };
        match iocd::daemon::run(config, args.config, controls, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "iocd stopped");
                eprintln!("iocd: error: {e}");
                e.exit().into()
            }
        }
    });
    // Everything is drained by now. A blocking read of a stdin that is still
    // open (`tail -F log | iocd run`) cannot be cancelled: do not wait for it.
    runtime.shutdown_background();
    code
}

fn check(args: CheckArgs) -> ExitCode {
    let config = match load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stderr = &mut io::stderr().lock();
    let mut unreachable = false;
    if args.connect {
        for (component, found) in iocd::probe::brokers(&config) {
            match found {
                Ok(what) => {
                    let _ = writeln!(io::stdout(), "{component}: {what}");
                }
                Err(why) => {
                    unreachable = true;
                    let _ = writeln!(stderr, "iocd: error: {component}: {why}");
                }
            }
        }
    }
    let t0 = Instant::now();
    match Loader::default().build_catching(&config.load_plan(), true) {
        Ok(built) => {
            let _ = built.report.write(&mut io::stdout().lock());
            // A file that is not a feed (every entry skipped, an HTML
            // page, a FIFO) is the content's problem, and the daemon runs
            // without it: a warning. One the daemon cannot read or fetch
            // is an error.
            use iocd::load::FailureReason;
            let is_error = |r: FailureReason| {
                !matches!(r, FailureReason::NotAFeed | FailureReason::SpecialFile)
            };
            for f in &built.failures {
                let (feed, why) = (&f.feed, &f.message);
                let level = if is_error(f.reason) {
                    "error"
                } else {
                    "warning"
                };
                let _ = writeln!(stderr, "iocd: {level}: feed {feed}: {why}");
            }
            let _ = iocd::load::write_engine_summary(
                &mut io::stdout().lock(),
                built.engine.stats(),
                t0.elapsed().as_secs_f64(),
            );
            if unreachable {
                Exit::Unavailable.into()
            } else if !built.failures.iter().any(|f| is_error(f.reason)) {
                ExitCode::SUCCESS
            } else {
                Exit::DataErr.into()
            }
        }
        Err(e) => {
            let _ = writeln!(stderr, "iocd: error: {e}");
            Exit::DataErr.into()
        }
    }
}

/// The name `iocd scan` gives the feed argument `path`: its base name, or
/// the whole argument when another argument has the same base name (so
/// `a/iocs.txt` and `b/iocs.txt` stay two feeds).
fn scan_feed_name(path: &Path, all: &[PathBuf]) -> String {
    let base = iocd::feeds::base_name(path);
    let same = all
        .iter()
        .filter(|p| iocd::feeds::base_name(p) == base)
        .count();
    if same > 1 {
        path.display().to_string()
    } else {
        base
    }
}

/// Loads the feeds `args` name, printing the load summary unless quiet.
fn load_feeds(args: &FeedArgs) -> Result<iocd::load::Built, ExitCode> {
    let stderr = &mut io::stderr().lock();
    let t0 = Instant::now();
    let mut plan = LoadPlan {
        engine: EngineOptions {
            bloom_min_keys: args.bloom_min_keys,
        },
        ..LoadPlan::default()
    };
    let feed = |path: &PathBuf| FeedConfig {
        misp_all_attributes: args.misp_all_attributes,
        allow_special_addresses: args.allow_special_addresses,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        max_shrink: 1.0, // one load: nothing earlier to guard
        format: args.feed_format,
        ..FeedConfig::at(path.clone())
    };
    if let Err(e) = feed(&PathBuf::new()).filter() {
        let _ = writeln!(stderr, "iocd: error: --{e}");
        return Err(Exit::Usage.into());
    }
    if args.indicators.is_empty() {
        if !args.quiet {
            let (name, _) = iocd::load::EXAMPLE_FEED;
            let _ = writeln!(
                stderr,
                "iocd: no --indicators given: using the built-in example feed {name}"
            );
        }
        plan.example_feed = true;
    }
    for p in &args.indicators {
        match p.to_str() {
            Some(url) if url.contains("/collections/") && url.starts_with("http") => {
                plan.taxii.push((url.to_owned(), TaxiiConfig::for_url(url)));
            }
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                let fc = FeedConfig {
                    url: Some(url.to_owned()),
                    tls: iocd::load::tls_from_env(),
                    ..feed(&PathBuf::new())
                };
                if let Err(e) = fc.validate() {
                    let _ = writeln!(stderr, "iocd: error: --indicators {url}: {e}");
                    return Err(Exit::Usage.into());
                }
                let name = fc.remote().map(|r| r.file_name()).unwrap_or_default();
                plan.feeds.push((name, fc));
            }
            _ => plan
                .feeds
                .push((scan_feed_name(p, &args.indicators), feed(p))),
        }
    }
    plan.allowlists = args
        .allowlists
        .iter()
        .map(|p| (scan_feed_name(p, &args.allowlists), feed(p)))
        .collect();
    let built = match Loader::default().build_catching(&plan, true) {
        Ok(built) => built,
        Err(e) => {
            let _ = writeln!(stderr, "iocd: error: {e}");
            return Err(Exit::DataErr.into());
        }
    };
    // A collection that cannot be polled is an error here: there is no
    // earlier content to fall back on.
    if let Some((feed, why)) = built.polls.iter().find_map(|(f, e)| Some((f, e.as_ref()?))) {
        let _ = writeln!(stderr, "iocd: error: {feed}: {why}");
        return Err(Exit::DataErr.into());
    }
    if let Some(f) = built
        .failures
        .iter()
        .find(|f| f.reason == iocd::load::FailureReason::Fetch)
    {
        let _ = writeln!(stderr, "iocd: error: feed {}: {}", f.feed, f.message);
        return Err(Exit::DataErr.into());
    }
    if !args.quiet {
        let _ = built.report.write(stderr);
        let _ = iocd::load::write_engine_summary(stderr, built.engine.stats(), built.seconds);
        for f in &built.failures {
            let (feed, why) = (&f.feed, &f.message);
            let _ = writeln!(stderr, "iocd: warning: feed {feed}: {why}");
        }
        let _ = writeln!(
            stderr,
            "iocd: feeds loaded in {:.3} s",
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(built)
}

fn scan(args: ScanArgs) -> ExitCode {
    let mut engine = match load_feeds(&args.feeds) {
        Ok(built) => built.engine,
        Err(code) => return code,
    };
    let stderr = &mut io::stderr().lock();
    if !args.since_indicators.is_empty() {
        let before = FeedArgs {
            indicators: args.since_indicators.clone(),
            ..args.feeds.clone()
        };
        let old = match load_feeds(&before) {
            Ok(built) => built.engine,
            Err(code) => return code,
        };
        let added = engine.added_since(&old);
        if !args.feeds.quiet {
            let _ = writeln!(
                stderr,
                "iocd: {} indicators new since --since-indicators; scanning for those only",
                added.len()
            );
        }
        engine = iocd::Engine::build(
            added,
            &EngineOptions {
                bloom_min_keys: args.feeds.bloom_min_keys,
            },
        );
    }
    let mut opts = ScanOptions {
        max_line: args.max_line_bytes.max(1),
        format: args.format,
        group: args.group,
        with_line: args.with_line,
        parse: args.parse,
        ..ScanOptions::default()
    };
    if let Some(t) = args.threads {
        opts.threads = t.max(1);
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let files = if args.files.is_empty() {
        vec![PathBuf::from("-")]
    } else {
        args.files
    };
    let mut code = ExitCode::SUCCESS;
    let t1 = Instant::now();
    let (mut bytes, mut hits) = (0u64, 0u64);
    for f in &files {
        let name = f.to_string_lossy();
        let result = if name == "-" {
            match iocd::scan::open_input(io::stdin()) {
                Ok(input) => scan_stream(&engine, "-", input, &mut out, &opts),
                Err(e) => Err(ScanError::Read(e)),
            }
        } else {
            match std::fs::File::open(f).and_then(iocd::scan::open_input) {
                Ok(file) => scan_stream(&engine, &name, file, &mut out, &opts),
                Err(e) => {
                    let _ = writeln!(stderr, "iocd: error: cannot read {name}: {e}");
                    code = Exit::NoInput.into();
                    continue;
                }
            }
        };
        match result {
            Ok(s) => {
                bytes += s.bytes;
                hits += s.hits;
                if !args.feeds.quiet {
                    let _ = writeln!(
                        stderr,
                        "iocd: {name}: {} lines, {} hits, {} truncated",
                        s.lines, s.hits, s.truncated
                    );
                }
            }
            // The reader of our output is gone (`| head`): done, as grep is.
            Err(ScanError::Write(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
                return ExitCode::SUCCESS
            }
            // A full disk, say: no later file can be written either.
            Err(e @ ScanError::Write(_)) => {
                let _ = writeln!(stderr, "iocd: error: {name}: {e}");
                return Exit::IoErr.into();
            }
            Err(e @ ScanError::Read(_)) => {
                let _ = writeln!(stderr, "iocd: error: {name}: {e}");
                code = Exit::NoInput.into();
            }
        }
    }
    if !args.feeds.quiet {
        let secs = t1.elapsed().as_secs_f64();
        let _ = writeln!(
            stderr,
            "iocd: scanned {bytes} bytes in {secs:.3} s ({:.1} MB/s), {hits} hits",
            bytes as f64 / 1e6 / secs.max(1e-9)
        );
    }
    code
}

/// A closed set named as in the config file, for a command-line value.
fn parse_config_name<T: serde::de::DeserializeOwned>(v: &str) -> Result<T, String> {
    T::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(v))
        .map_err(|e| e.to_string())
}

fn parse_hit_format(v: &str) -> Result<iocd::hit::HitFormat, String> {
    parse_config_name(v)
}

fn parse_grouping(v: &str) -> Result<iocd::hit::Grouping, String> {
    parse_config_name(v)
}

fn parse_line_format(v: &str) -> Result<iocd::context::LineFormat, String> {
    parse_config_name(v)
}

/// The engine and report `explain` and `lookup` ask: a config's feeds or
/// `-i`'s, with every skipped entry kept so a value's reason is there.
fn inspect_load(args: &InspectArgs) -> Result<iocd::load::Built, ExitCode> {
    iocd::feeds::keep_every_skip(true);
    match &args.config {
        Some(path) => {
            let config = load_config(&ConfigArgs {
                config: Some(path.clone()),
            })?;
            Loader::default()
                .build_catching(&config.load_plan(), true)
                .map_err(|e| {
                    eprintln!("iocd: error: {e}");
                    Exit::DataErr.into()
                })
        }
        None => load_feeds(&args.feeds),
    }
}

fn explain(args: ExplainArgs) -> ExitCode {
    let built = match inspect_load(&args.inspect) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let lines: Vec<Vec<u8>> = if args.line == "-" {
        let mut all = Vec::new();
        if let Err(e) = io::Read::read_to_end(&mut io::stdin().lock(), &mut all) {
            eprintln!("iocd: error: reading stdin: {e}");
            return Exit::IoErr.into();
        }
        all.split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        vec![args.line.into_bytes()]
    };
    let mut out = String::new();
    for line in &lines {
        let ex = iocd::explain::explain(&built.engine, Some(&built.report), line);
        if args.inspect.json {
            out.push_str(&serde_json::to_string(&ex).expect("serialisable"));
            out.push('\n');
        } else {
            if lines.len() > 1 {
                out.push_str(&format!("line: {}\n", String::from_utf8_lossy(line)));
            }
            ex.write_text(&mut out);
        }
    }
    print_or_exit(&out)
}

fn lookup(args: LookupArgs) -> ExitCode {
    let built = match inspect_load(&args.inspect) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let names = built.allowlist.names().to_vec();
    let allowed = |ind: &iocd::Indicator| {
        built
            .allowlist
            .allows(ind)
            .map(|s| format!("allowlist {}", names[s as usize]))
    };
    let l = iocd::explain::lookup(&built.engine, &built.report, &args.value, allowed);
    let mut out = String::new();
    if args.inspect.json {
        out = serde_json::to_string(&l).expect("serialisable") + "\n";
    } else {
        l.write_text(&mut out);
    }
    let code = print_or_exit(&out);
    if l.active.is_empty() && l.also_matched_by.is_empty() {
        // grep's convention: 1 when nothing was found.
        return ExitCode::from(1);
    }
    code
}

/// Writes `out` to stdout; a closed pipe is a normal end.
fn print_or_exit(out: &str) -> ExitCode {
    match io::stdout().lock().write_all(out.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("iocd: error: writing: {e}");
            Exit::IoErr.into()
        }
    }
}

//! Exporting sightings: every `interval_secs` (and at shutdown) the tally
//! becomes one STIX bundle, appended to a file, and/or queued for a TAXII
//! collection, and MISP sightings appended to a file.
//!
//! The TAXII queue is `state_dir/sightings/`: one file per bundle, written
//! (temp file, then rename) before any attempt to send it and removed once
//! the server accepted it; sent oldest first, retried with backoff; a
//! restart sends what is left.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{watch, Notify};

use super::{build, SightingsConfig, Tally};
use crate::backoff::Backoff;

/// The metrics exports move.
#[derive(Clone)]
pub struct ExportMetrics {
    /// Sightings exported, by exporter.
    pub exported: prometheus::IntCounterVec,
    /// Sightings withheld, by reason (`tlp_red`, `no_pattern`).
    pub withheld: prometheus::IntCounterVec,
    /// Bundles waiting for the TAXII server.
    pub pending: prometheus::IntGauge,
}

/// Runs until shutdown, then exports what the last interval holds.
pub async fn run(
    tally: Arc<Tally>,
    config: SightingsConfig,
    state_dir: Option<PathBuf>,
    metrics: ExportMetrics,
    mut shutdown: watch::Receiver<bool>,
) {
    let queue = state_dir.map(|d| d.join("sightings"));
    let wake = Arc::new(Notify::new());
    let finished = Arc::new(AtomicBool::new(false));
    let sender = match (&config.taxii, &queue) {
        (Some(t), Some(q)) => {
            if let Err(e) = std::fs::create_dir_all(q) {
                tracing::error!(dir = %q.display(), error = %e, "sightings: cannot create the TAXII queue");
            }
            Some(tokio::spawn(send_loop(
                t.collection(),
                q.clone(),
                wake.clone(),
                finished.clone(),
                metrics.clone(),
            )))
        }
        _ => None,
    };
    let period = Duration::from_secs(config.interval_secs);
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        let last = tokio::select! {
            _ = crate::sources::shutdown_signalled(&mut shutdown) => true,
            _ = ticker.tick() => false,
        };
        export_once(&tally, &config, queue.as_deref(), &metrics);
        if last {
            finished.store(true, Ordering::Release);
        }
        wake.notify_one();
        if last {
            break;
        }
    }
    if let Some(s) = sender {
        // The sender stops at shutdown; what it did not send stays queued.
        let _ = s.await;
    }
}

/// Builds and writes one interval's export.
pub fn export_once(
    tally: &Tally,
    config: &SightingsConfig,
    queue: Option<&Path>,
    m: &ExportMetrics,
) {
    let seen = tally.take();
    if seen.is_empty() {
        return;
    }
    let now = crate::time::unix_millis_now();
    let ex = build(&seen, &config.identity, config.observed_data, now);
    m.withheld
        .with_label_values(&["tlp_red"])
        .inc_by(ex.withheld_red as u64);
    m.withheld
        .with_label_values(&["no_pattern"])
        .inc_by(ex.no_pattern as u64);
    if ex.objects.is_empty() {
        return;
    }
    let sightings = ex.misp.len() as u64;
    let bundle = serde_json::json!({
        "type": "bundle",
        "id": format!("bundle--{}", uuid::Uuid::new_v4()),
        "objects": ex.objects,
    });
    if let Some(path) = &config.file {
        match append(path, std::slice::from_ref(&bundle)) {
            Ok(()) => m.exported.with_label_values(&["file"]).inc_by(sightings),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "sightings: cannot append the bundle")
            }
        }
    }
    if let Some(path) = &config.misp_file {
        match append(path, &ex.misp) {
            Ok(()) => m
                .exported
                .with_label_values(&["misp_file"])
                .inc_by(sightings),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "sightings: cannot append MISP sightings")
            }
        }
    }
    if let Some(q) = queue.filter(|_| config.taxii.is_some()) {
        let name = format!("{now:016}-{}.json", uuid::Uuid::new_v4().simple());
        let tmp = q.join(format!(".{name}.tmp"));
        let written = std::fs::write(&tmp, serde_json::to_vec(&bundle["objects"]).expect("json"))
            .and_then(|()| std::fs::rename(&tmp, q.join(&name)));
        match written {
            Ok(()) => m.pending.inc(),
            Err(e) => {
                tracing::error!(dir = %q.display(), error = %e, "sightings: cannot queue the bundle for TAXII; it is lost")
            }
        }
    }
}

/// Appends each value as a JSON line, then syncs.
fn append(path: &Path, values: &[Value]) -> std::io::Result<()> {
    let mut out = Vec::new();
    for v in values {
        serde_json::to_writer(&mut out, v)?;
        out.push(b'\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(&out)?;
    f.sync_data()
}

/// Queued bundles, oldest first.
fn queued(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    v.sort();
    v
}

async fn send_loop(
    collection: crate::taxii::Collection,
    dir: PathBuf,
    wake: Arc<Notify>,
    finished: Arc<AtomicBool>,
    m: ExportMetrics,
) {
    let tls = crate::http_client::TlsSettings {
        ca_file: collection.ca_file.clone(),
        ..Default::default()
    };
    let client = match crate::http_client::client(collection.timeout, &tls) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "sightings: cannot build the TAXII client");
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(60));
    m.pending.set(queued(&dir).len() as i64);
    loop {
        // Read before the pass: once set, the final interval's bundle is
        // already queued, so this pass sees it.
        let last = finished.load(Ordering::Acquire);
        let mut failed = false;
        for path in queued(&dir) {
            let objects: Vec<Value> = match std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
            {
                Some(o) => o,
                None => {
                    tracing::error!(path = %path.display(), "sightings: queued bundle unreadable; set aside");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                    continue;
                }
            };
            let sightings = objects.iter().filter(|o| o["type"] == "sighting").count() as u64;
            match crate::taxii::post_objects(&client, &collection, &objects).await {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                    m.exported.with_label_values(&["taxii"]).inc_by(sightings);
                    backoff.reset();
                }
                Err(e) => {
                    tracing::warn!(error = %e, queued = %path.display(), "sightings: TAXII post failed; retrying");
                    failed = true;
                    break;
                }
            }
        }
        m.pending.set(queued(&dir).len() as i64);
        let wait = if failed {
            backoff.next_wait()
        } else {
            Duration::from_secs(3600)
        };
        if last {
            // At shutdown: one last pass was made (each attempt bounded by
            // the collection's timeout); what failed stays queued.
            return;
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

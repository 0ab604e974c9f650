//! Telling systemd (`Type=notify`) how the daemon is: READY once the first
//! engine is built and every source listens, RELOADING and READY around
//! each reload, STOPPING when the drain begins, and WATCHDOG pings while the
//! pipeline runs. Without `NOTIFY_SOCKET` (not under systemd, or not
//! `Type=notify`) every call does nothing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

use crate::metrics::Metrics;

fn notify(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// READY=1, with a status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// RELOADING=1 (READY=1 follows when the reload is done).
pub fn reloading() {
    notify(&[NotifyState::Reloading]);
}

/// STOPPING=1.
pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

/// The watchdog period systemd asked for, as `sd_watchdog_enabled(3)`
/// reads it: `WATCHDOG_USEC`, for this process when `WATCHDOG_PID` names it
/// or is unset. (The sd-notify crate insists on `WATCHDOG_PID`.)
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse() != Ok(std::process::id()) => None,
        _ => (usec > 0).then_some(usec),
    }
}

/// When systemd asked for watchdog pings (`WatchdogSec=`), pings at half
/// the period for as long as the pipeline runs: a dead reload task or a
/// runtime too stuck to run this task stops the pings, and systemd
/// restarts the service.
pub fn spawn_watchdog(metrics: Arc<Metrics>) -> Option<tokio::task::JoinHandle<()>> {
    let usec = watchdog_usec()?;
    let every = Duration::from_micros(usec / 2).max(Duration::from_millis(10));
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if !metrics.reloader_alive.load(Ordering::Acquire) {
                tracing::error!("the reload task has died: watchdog pings stop");
                return;
            }
            notify(&[NotifyState::Watchdog]);
        }
    }))
}

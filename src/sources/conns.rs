//! Who may hold a connection to a stream source: the connection limit, an
//! optional per-peer limit, an idle timeout, and eviction of the connection
//! idle the longest when the limit is reached.
//!
//! Why eviction: 1,024 sockets that send a byte a second (slowloris) would
//! otherwise hold every slot, and a real log shipper, which reconnects,
//! would be refused for as long as the attack lasts. A connection idle more
//! than `evict_idle` is worth less than a new one.
//!
//! Invariant: the registry never holds more than `max` connections; an
//! evicted connection leaves it at once and its task ends at its next
//! await (it is told through [`Activity::evicted`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The limits of one stream source.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections at once.
    pub max: usize,
    /// Connections at once from one peer address (none: no limit).
    pub per_peer: Option<usize>,
    /// A connection that sends nothing this long is closed.
    pub idle_timeout: Duration,
    /// At the limit, a connection idle this long gives way to a new one.
    pub evict_idle: Duration,
}

/// One connection's last activity, and the signal that evicts it.
#[derive(Debug)]
pub struct Activity {
    /// Milliseconds since the registry's start at the last read.
    last_ms: AtomicU64,
    evict: Notify,
    start: Instant,
}

impl Activity {
    /// Records a read now.
    pub fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }

    /// Completes when the connection is evicted.
    pub async fn evicted(&self) {
        self.evict.notified().await;
    }
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// At the connection limit, and no connection idle long enough to evict.
    Limit,
    /// At the per-peer limit for this address.
    PerPeer,
}

impl Refused {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Limit => "limit",
            Refused::PerPeer => "per_peer",
        }
    }
}

#[derive(Default)]
struct Inner {
    next: u64,
    conns: HashMap<u64, (Option<IpAddr>, Arc<Activity>)>,
    per_peer: HashMap<IpAddr, usize>,
}

/// The connections of one source.
pub struct Registry {
    limits: Limits,
    start: Instant,
    inner: Mutex<Inner>,
}

/// A connection's place in the registry, given back when dropped.
pub struct Ticket {
    registry: Arc<Registry>,
    id: u64,
    /// The connection's activity, touched on every read.
    pub activity: Arc<Activity>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.registry.inner.lock().expect("registry");
        if let Some((Some(peer), _)) = inner.conns.remove(&self.id) {
            release(&mut inner.per_peer, peer);
        }
    }
}

fn release(per_peer: &mut HashMap<IpAddr, usize>, peer: IpAddr) {
    if let Some(n) = per_peer.get_mut(&peer) {
        *n -= 1;
        if *n == 0 {
            per_peer.remove(&peer);
        }
    }
}

impl Registry {
    /// An empty registry under `limits`.
    pub fn new(limits: Limits) -> Arc<Registry> {
        Arc::new(Registry {
            limits,
            start: Instant::now(),
            inner: Mutex::new(Inner::default()),
        })
    }

    /// The limits it enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Admits a connection from `peer` (none for Unix sockets), evicting
    /// the connection idle the longest when at the limit and that one has
    /// been idle more than `evict_idle`. Returns the ticket, and whether a
    /// connection was evicted for it.
    ///
    /// # Errors
    /// [`Refused`] when it may not be admitted.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<(Ticket, bool), Refused> {
        let mut inner = self.inner.lock().expect("registry");
        if let (Some(peer), Some(max)) = (peer, self.limits.per_peer) {
            if inner.per_peer.get(&peer).copied().unwrap_or(0) >= max {
                return Err(Refused::PerPeer);
            }
        }
        let mut evicted = false;
        if inner.conns.len() >= self.limits.max {
            let idlest = inner
                .conns
                .iter()
                .map(|(id, (_, a))| (*id, a.idle()))
                .max_by_key(|&(_, idle)| idle);
            match idlest {
                Some((id, idle)) if idle >= self.limits.evict_idle => {
                    let (old_peer, activity) = inner.conns.remove(&id).expect("present");
                    if let Some(p) = old_peer {
                        release(&mut inner.per_peer, p);
                    }
                    activity.evict.notify_one();
                    evicted = true;
                }
                _ => return Err(Refused::Limit),
            }
        }
        let activity = Arc::new(Activity {
            last_ms: AtomicU64::new(0),
            evict: Notify::new(),
            start: self.start,
        });
        activity.touch();
        let id = inner.next;
        inner.next += 1;
        inner.conns.insert(id, (peer, activity.clone()));
        if let Some(p) = peer {
            *inner.per_peer.entry(p).or_default() += 1;
        }
        drop(inner);
        Ok((
            Ticket {
                registry: self.clone(),
                id,
                activity,
            },
            evicted,
        ))
    }
}

/// A warning said at most once per interval, with how many were not said:
/// a flood of refused connections must not become a flood of log lines.
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    quiet: u64,
}

impl Throttle {
    /// A throttle letting one warning through per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            quiet: 0,
        }
    }

    /// `Some(warnings held back since the last one)` when this one may be
    /// said, else `None` (and it is counted).
    pub fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < self.every => {
                self.quiet += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.quiet))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_peer: Option<usize>, evict_ms: u64) -> Limits {
        Limits {
            max,
            per_peer,
            idle_timeout: Duration::from_secs(600),
            evict_idle: Duration::from_millis(evict_ms),
        }
    }

    #[test]
    fn at_the_limit_the_idlest_gives_way_only_when_idle_long_enough() {
        let peer = |n| Some(IpAddr::from([127, 0, 0, n]));
        let r = Registry::new(limits(2, None, 3_600_000));
        let (a, _) = r.admit(peer(1)).unwrap();
        let (_b, _) = r.admit(peer(2)).unwrap();
        // Nobody has been idle an hour: refused.
        assert_eq!(r.admit(peer(3)).err(), Some(Refused::Limit));
        drop(a);
        assert!(r.admit(peer(3)).is_ok());

        // With no idle threshold the idlest is evicted and told so.
        let r = Registry::new(limits(1, None, 0));
        let (old, _) = r.admit(peer(1)).unwrap();
        let (_new, evicted) = r.admit(peer(2)).unwrap();
        assert!(evicted);
        let told = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(5), old.activity.evicted())
                    .await
                    .is_ok()
            });
        assert!(told);
        drop(old); // its ticket was already given back: nothing breaks
        assert_eq!(r.inner.lock().unwrap().conns.len(), 1);
    }

    #[test]
    fn per_peer_limit_counts_each_address() {
        let r = Registry::new(limits(10, Some(2), 0));
        let one = Some(IpAddr::from([127, 0, 0, 1]));
        let (a, _) = r.admit(one).unwrap();
        let (_b, _) = r.admit(one).unwrap();
        assert_eq!(r.admit(one).err(), Some(Refused::PerPeer));
        assert!(r.admit(Some(IpAddr::from([127, 0, 0, 2]))).is_ok());
        assert!(r.admit(None).is_ok());
        drop(a);
        assert!(r.admit(one).is_ok());
    }

    #[test]
    fn throttle_says_one_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        let mut t = Throttle::new(Duration::ZERO);
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), Some(0));
    }
}

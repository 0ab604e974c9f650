//! End-to-end acknowledgement on the source side: a source that can commit
//! (a file's offset; a broker's partition offset or message ack) tracks the
//! position each sent batch stands for, and commits only the longest prefix
//! of batches whose hits every sink has written. Batches finish out of
//! order (several matcher threads, several sinks); commits never skip
//! ahead of a batch still in flight: at-least-once.

use std::collections::VecDeque;

use tokio::sync::oneshot;

use crate::pipeline::Ack;

/// Positions of sent batches, in the order sent, each with its ack.
#[derive(Debug)]
pub struct AckTracker<P> {
    /// `None` once its ack is known to have fired.
    pending: VecDeque<(P, Option<oneshot::Receiver<()>>)>,
}

impl<P> Default for AckTracker<P> {
    fn default() -> Self {
        AckTracker {
            pending: VecDeque::new(),
        }
    }
}

impl<P> AckTracker<P> {
    /// An ack to attach to a batch whose end stands for `position`.
    pub fn track(&mut self, position: P) -> Ack {
        let (ack, rx) = Ack::new();
        self.pending.push_back((position, Some(rx)));
        ack
    }

    /// The position to commit now, if it advanced: the last of the longest
    /// acknowledged prefix, which is forgotten.
    pub fn acknowledged(&mut self) -> Option<P> {
        self.acknowledged_all().pop()
    }

    /// Every position of the longest acknowledged prefix, in send order,
    /// forgotten: for a source whose batches mix partitions or messages,
    /// each of which must be committed.
    pub fn acknowledged_all(&mut self) -> Vec<P> {
        let mut done = Vec::new();
        while let Some((_, ack)) = self.pending.front_mut() {
            if let Some(rx) = ack {
                if matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
                    break;
                }
            }
            done.extend(self.pending.pop_front().map(|(p, _)| p));
        }
        done
    }

    /// Batches sent and not yet acknowledged (or not yet seen to be).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Resolves when the oldest batch in flight is acknowledged (at once
    /// when none is): a source waits on this beside its input, to commit
    /// promptly without polling.
    pub async fn oldest_acknowledged(&mut self) {
        if let Some((_, ack)) = self.pending.front_mut() {
            if let Some(rx) = ack {
                let _ = rx.await;
                *ack = None;
            }
        } else {
            std::future::pending::<()>().await
        }
    }

    /// Waits for every batch in flight; every position, in send order.
    pub async fn drain_all(&mut self) -> Vec<P> {
        let mut all = Vec::new();
        while let Some((p, ack)) = self.pending.pop_front() {
            if let Some(rx) = ack {
                let _ = rx.await;
            }
            all.push(p);
        }
        all
    }

    /// Waits for every batch in flight; the last position (to commit before
    /// exiting), if any was pending.
    pub async fn drain(&mut self) -> Option<P> {
        let mut last = None;
        while let Some((p, ack)) = self.pending.pop_front() {
            if let Some(rx) = ack {
                let _ = rx.await;
            }
            last = Some(p);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn commits_follow_send_order_whatever_order_acks_fire_in() {
        let mut t = AckTracker::default();
        let a = t.track(10);
        let b = t.track(20);
        let c = t.track(30);
        drop(b); // the second batch is written first
        assert_eq!(t.acknowledged(), None, "the first is still in flight");
        drop(a);
        assert_eq!(t.acknowledged(), Some(20));
        assert_eq!(t.acknowledged(), None);
        assert_eq!(t.pending.len(), 1);
        let d = t.track(40);
        drop(d);
        drop(c);
        assert_eq!(t.drain().await, Some(40));
        assert!(t.pending.is_empty());
    }
}

//! Hits as JSON lines on standard output.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::driver::{HitWriter, Outcome, PendingHit};
use crate::hit::HitFormat;

/// `[sinks.NAME] type = "stdout"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    #[serde(default)]
    pub format: HitFormat,
}

pub struct StdoutWriter {
    out: tokio::io::Stdout,
    buf: Vec<u8>,
}

impl StdoutWriter {
    pub fn new() -> StdoutWriter {
        StdoutWriter {
            out: tokio::io::stdout(),
            buf: Vec::new(),
        }
    }
}

impl HitWriter for StdoutWriter {
    async fn write(&mut self, hits: &[PendingHit], format: HitFormat) -> Outcome {
        self.buf.clear();
        for h in hits {
            self.buf.extend_from_slice(h.bytes(format));
        }
        let r = async {
            self.out.write_all(&self.buf).await?;
            self.out.flush().await
        }
        .await;
        match r {
            Ok(()) => Outcome::written(),
            // A closed stdout (the reader went away) cannot come back.
            Err(e) => Outcome::rejected_all(hits.len(), format!("cannot write to stdout: {e}")),
        }
    }
}

//! `iocd check --connect`: reaches every message broker the configuration
//! names and says, per source and sink, what is there and what is missing
//! (a topic, a stream, a stream for the hits' subject). Plain `check`
//! validates the same settings without connecting.

use crate::config::Config;
use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;

/// One finding: the component (`sources.bus`) and what reaching it gave.
pub type Finding = (String, Result<String, String>);

/// Probes every broker source and sink; other components are not listed.
pub fn brokers(config: &Config) -> Vec<Finding> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut found = Vec::new();
    for (name, source) in &config.sources {
        let key = format!("sources.{name}");
        match source {
            SourceConfig::Kafka(c) => {
                let topics: Vec<&str> = c.topics.iter().map(String::as_str).collect();
                found.push((key, crate::kafka::probe(&c.connection(), &topics)));
            }
            SourceConfig::Nats(c) => {
                let stream = Some((c.stream.as_str(), c.consumer.as_str()));
                let r = runtime.block_on(crate::nats::probe(&c.connection(), stream, None));
                found.push((key, r));
            }
            _ => {}
        }
    }
    for (name, sink) in &config.sinks {
        let key = format!("sinks.{name}");
        match sink {
            SinkConfig::Kafka(c) => {
                let fixed =
                    crate::sinks::template::NameTemplate::parse(&c.topic, crate::kafka::topic_char)
                        .ok()
                        .and_then(|t| t.fixed().map(str::to_owned));
                let topics: Vec<&str> = fixed.as_deref().into_iter().collect();
                found.push((key, crate::kafka::probe(&c.connection(), &topics)));
            }
            SinkConfig::Nats(c) => {
                let fixed = crate::sinks::template::NameTemplate::parse(
                    &c.subject,
                    crate::nats::subject_char,
                )
                .ok()
                .map(|t| t.render("ipv4-addr", "feed", crate::nats::subject_safe));
                let r =
                    runtime.block_on(crate::nats::probe(&c.connection(), None, fixed.as_deref()));
                found.push((key, r));
            }
            _ => {}
        }
    }
    found
}

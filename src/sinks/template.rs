//! Destination names with placeholders: a hit goes to the Kafka topic or
//! NATS subject its indicator type or feed names.

/// A destination name (Kafka topic, NATS subject) from a template with
/// `{type}` and `{feed}`: what the placeholders become is cut to the
/// characters the destination allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameTemplate(Vec<Part>);

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Type,
    Feed,
}

impl NameTemplate {
    /// Parses `template`; `legal` says which characters the destination
    /// allows in its literal parts.
    ///
    /// # Errors
    /// An unknown placeholder, an unclosed brace, a character `legal`
    /// refuses, or an empty template.
    pub fn parse(template: &str, legal: fn(char) -> bool) -> Result<NameTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("{template:?}: `{{` without `}}`"))?;
            parts.push(match &rest[open + 1..open + close] {
                "type" => Part::Type,
                "feed" => Part::Feed,
                other => {
                    return Err(format!(
                        "{template:?}: unknown placeholder {{{other}}}; use {{type}} or {{feed}}"
                    ))
                }
            });
            rest = &rest[open + close + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("an empty name".into());
        }
        for p in &parts {
            if let Part::Text(t) = p {
                if let Some(c) = t.chars().find(|&c| !legal(c)) {
                    return Err(format!("{template:?}: {c:?} is not allowed here"));
                }
            }
        }
        Ok(NameTemplate(parts))
    }

    /// The name with no placeholder in it, if it has none.
    pub fn fixed(&self) -> Option<&str> {
        match self.0.as_slice() {
            [Part::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// The name for a hit of `kind` from `feed`; `safe` maps a character
    /// of a placeholder's value to one the destination allows.
    pub fn render(&self, kind: &str, feed: &str, safe: fn(char) -> char) -> String {
        let mut out = String::new();
        for p in &self.0 {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Type => out.extend(kind.chars().map(safe)),
                Part::Feed => out.extend(feed.chars().map(safe)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_templates() {
        let t = NameTemplate::parse("iocd-{type}.{feed}", crate::kafka::topic_char).unwrap();
        assert_eq!(
            t.render("ipv4", "abuse ch/urlhaus", crate::kafka::topic_safe),
            "iocd-ipv4.abuse_ch_urlhaus"
        );
        assert_eq!(t.fixed(), None);
        let f = NameTemplate::parse("hits", crate::kafka::topic_char).unwrap();
        assert_eq!(f.fixed(), Some("hits"));
        for bad in ["{nope}", "a{type", "bad topic", ""] {
            assert!(
                NameTemplate::parse(bad, crate::kafka::topic_char).is_err(),
                "{bad}"
            );
        }
    }
}

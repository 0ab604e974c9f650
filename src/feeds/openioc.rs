//! OpenIOC 1.0 and 1.1 XML (published by vendors next to their MISP events),
//! read with quick-xml. An `IndicatorItem` becomes an indicator when its
//! condition is `is` and its search term names an observable a log line can
//! show: a DNS name, a remote IP, a URL, an MD5/SHA-1/SHA-256 or an email
//! sender. Every other item is skipped with its condition or term as the
//! reason. XML whose root is not `ioc` is not a feed.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::{FeedContext, Parsed, SkipLog, SkipReason};
use crate::indicator::canon::{typed, TypeHint};
use crate::indicator::IndicatorType;

/// Why XML is not read as OpenIOC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotOpenIoc {
    /// The XML does not parse: the message and its 1-based line.
    Invalid(String, u32),
    /// Well-formed XML whose root element is this, not `ioc`.
    OtherRoot(String),
}

/// True when `text` opens as XML (a declaration or an element).
pub fn looks_like_xml(text: &str) -> bool {
    let head = text.trim_start_matches('\u{feff}').trim_start();
    head.starts_with("<?xml")
        || head
            .strip_prefix('<')
            .and_then(|r| r.chars().next())
            .is_some_and(|c| c.is_ascii_alphabetic())
}

/// What an OpenIOC search term holds.
fn hint_of(search: &str) -> Option<TypeHint> {
    use IndicatorType as T;
    Some(match search {
        "Network/DNS" | "DnsEntryItem/Host" | "DnsEntryItem/RecordName" => {
            TypeHint::Exactly(T::Domain)
        }
        "PortItem/remoteIP" | "Network/IP" | "ProcessItem/PortList/PortItem/remoteIP" => {
            TypeHint::Ip
        }
        "Network/URI" | "UrlHistoryItem/URL" => TypeHint::Exactly(T::Url),
        "FileItem/Md5sum" | "FileItem/Sha1sum" | "FileItem/Sha256sum" => TypeHint::Hash,
        "Email/From" | "Email/Sender" => TypeHint::Exactly(T::Email),
        _ => return None,
    })
}

/// One `IndicatorItem` being read.
#[derive(Default)]
struct Item {
    id: String,
    condition: String,
    search: String,
    content: String,
    in_content: bool,
    line: u32,
}

/// Parses OpenIOC XML.
///
/// # Errors
/// The XML does not parse, or its root is not `ioc`.
pub fn parse(ctx: &FeedContext, text: &str) -> Result<Parsed, NotOpenIoc> {
    let mut reader = Reader::from_str(text);
    let line_at = |pos: u64| {
        let pos = (pos as usize).min(text.len());
        1 + memchr::memchr_iter(b'\n', &text.as_bytes()[..pos]).count() as u32
    };
    let mut indicators = Vec::new();
    let mut skipped = SkipLog::default();
    let mut root_seen = false;
    let mut item: Option<Item> = None;
    let attr = |e: &quick_xml::events::BytesStart, name: &str| -> String {
        e.try_get_attribute(name)
            .ok()
            .flatten()
            .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
            .unwrap_or_default()
    };
    loop {
        let pos = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| NotOpenIoc::Invalid(e.to_string(), line_at(reader.error_position())))?;
        match event {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let local = e.local_name();
                let name = String::from_utf8_lossy(local.as_ref()).into_owned();
                if !root_seen {
                    root_seen = true;
                    if name != "ioc" {
                        return Err(NotOpenIoc::OtherRoot(name));
                    }
                    continue;
                }
                match name.as_str() {
                    "IndicatorItem" => {
                        item = Some(Item {
                            id: attr(&e, "id"),
                            condition: attr(&e, "condition"),
                            line: line_at(pos),
                            ..Item::default()
                        })
                    }
                    "Context" => {
                        if let Some(i) = item.as_mut() {
                            i.search = attr(&e, "search");
                        }
                    }
                    "Content" => {
                        if let Some(i) = item.as_mut() {
                            i.in_content = true;
                        }
                    }
                    _ => {}
                }
            }
            Event::Text(t) => {
                if let Some(i) = item.as_mut().filter(|i| i.in_content) {
                    i.content.push_str(&t.xml_content().unwrap_or_default());
                }
            }
            Event::CData(t) => {
                if let Some(i) = item.as_mut().filter(|i| i.in_content) {
                    i.content.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(i) = item.as_mut().filter(|i| i.in_content) {
                    i.content.push_str(match &*r {
                        b"amp" => "&",
                        b"lt" => "<",
                        b"gt" => ">",
                        b"quot" => "\"",
                        b"apos" => "'",
                        _ => "",
                    });
                }
            }
            Event::End(e) => match e.local_name().as_ref() {
                b"Content" => {
                    if let Some(i) = item.as_mut() {
                        i.in_content = false;
                    }
                }
                b"IndicatorItem" => {
                    if let Some(i) = item.take() {
                        read_item(ctx, i, &mut indicators, &mut skipped);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }
    if !root_seen {
        return Err(NotOpenIoc::Invalid("no root element".into(), 1));
    }
    Ok(Parsed {
        indicators,
        skipped,
    })
}

fn read_item(
    ctx: &FeedContext,
    i: Item,
    indicators: &mut Vec<crate::indicator::Indicator>,
    skipped: &mut SkipLog,
) {
    let value = i.content.trim();
    if i.condition != "is" {
        return skipped.push_reason(
            i.line,
            SkipReason::UnsupportedType,
            format!(
                "IndicatorItem {}: condition {:?} on {} (only `is` is matched)",
                i.id, i.condition, i.search
            ),
        );
    }
    let Some(hint) = hint_of(&i.search) else {
        return skipped.push_reason(
            i.line,
            SkipReason::UnsupportedType,
            format!("IndicatorItem {}: search term {:?}", i.id, i.search),
        );
    };
    match typed(hint, value) {
        Some(c) => {
            let meta = vec![
                ("openioc_item".into(), i.id.into_boxed_str()),
                ("openioc_search".into(), i.search.into_boxed_str()),
            ];
            indicators.push(ctx.indicator(c, i.line, meta));
        }
        None => skipped.push(
            i.line,
            format!(
                "IndicatorItem {}: {value:?} is not a valid {}",
                i.id, i.search
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::test_support::pairs;

    const IOC: &str = r#"<?xml version="1.0" encoding="us-ascii"?>
<!-- a comment -->
<ioc xmlns="http://schemas.mandiant.com/2010/ioc" id="x">
  <definition>
    <Indicator operator="OR" id="i">
      <IndicatorItem id="a" condition="is">
        <Context document="Network" search="Network/DNS" type="mir" />
        <Content type="string">C2.Example</Content>
      </IndicatorItem>
      <IndicatorItem id="b" condition="is">
        <Context document="FileItem" search="FileItem/Sha1sum" type="mir" />
        <Content type="string">da39a3ee5e6b4b0d3255bfef95601890afd80709</Content>
      </IndicatorItem>
      <IndicatorItem id="c" condition="contains">
        <Context document="Network" search="Network/URI" type="mir" />
        <Content type="string">o5o8c1berdn.net</Content>
      </IndicatorItem>
      <IndicatorItem id="d" condition="is">
        <Context document="Snort" search="Snort/Snort" type="mir" />
        <Content type="string">alert tcp any any</Content>
      </IndicatorItem>
      <IndicatorItem id="e" condition="is">
        <Context document="PortItem" search="PortItem/remoteIP" type="mir" />
        <Content type="IP">198.51.100.7</Content>
      </IndicatorItem>
      <IndicatorItem id="f" condition="is">
        <Context document="Network" search="Network/URI" type="mir" />
        <Content type="string">http://evil.example/a?x=1&amp;y=2</Content>
      </IndicatorItem>
    </Indicator>
  </definition>
</ioc>"#;

    fn ctx() -> FeedContext {
        FeedContext::named("x.ioc")
    }

    #[test]
    fn is_items_of_known_terms_load_and_the_rest_say_why() {
        let p = parse(&ctx(), IOC).unwrap();
        assert_eq!(
            pairs(&p.indicators),
            [
                ("domain-name", "c2.example"),
                ("sha1", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
                ("ipv4-addr", "198.51.100.7"),
                ("url", "http://evil.example/a?x=1&y=2"),
            ]
        );
        assert_eq!(p.indicators[0].provenance.line, 6);
        assert_eq!(p.skipped.count, 2);
        assert!(p.skipped.examples[0]
            .reason
            .contains("condition \"contains\""));
        assert!(p.skipped.examples[1].reason.contains("Snort/Snort"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in "[<>/=\"a-zA-Z &;!\\[\\]-]{0,300}") {
            let _ = parse(&ctx(), &body);
            let wrapped = format!(
                "<ioc><IndicatorItem condition=\"is\"><Context search=\"Network/DNS\"/><Content>{body}</Content></IndicatorItem></ioc>"
            );
            let _ = parse(&ctx(), &wrapped);
        }
    }

    #[test]
    fn other_xml_and_broken_xml_are_not_feeds() {
        assert_eq!(
            parse(&ctx(), "<?xml version=\"1.0\"?><rss><channel/></rss>").err(),
            Some(NotOpenIoc::OtherRoot("rss".into()))
        );
        assert!(matches!(
            parse(&ctx(), "<ioc>\n<IndicatorItem></Oops></ioc>"),
            Err(NotOpenIoc::Invalid(_, 2))
        ));
        assert!(looks_like_xml("  <?xml version='1.0'?>"));
        assert!(looks_like_xml("<ioc>"));
        assert!(!looks_like_xml("[2001:db8::1]:443"));
        assert!(!looks_like_xml("<13>Oct 11 host app: x"));
    }
}

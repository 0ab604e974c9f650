//! Syslog headers: RFC 5424, and RFC 3164 (BSD) as `logger`, rsyslog and
//! syslog files write it, with or without the leading `<PRI>`.
//!
//! Accepted shapes (after an optional `<PRI>`, 0 to 191):
//! - RFC 5424: `1 TIMESTAMP HOST APP PROCID MSGID SD MSG` (`-` is nil);
//! - RFC 3164: `Mmm dd hh:mm:ss HOST TAG[PID]: MSG`, or the same with an
//!   RFC 3339 timestamp (rsyslog's forward and file formats).
//!
//! An RFC 3164 timestamp has no year and no zone: it is read as UTC in the
//! year that puts it closest before now (a December line read in January
//! is last year's). A line that fits none of these has no header.

use crate::time::{civil_year, days_from_civil, num, rfc3339_millis, unix_millis_now};

/// A parsed header; text borrowed from the line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyslogHeader<'a> {
    /// `<PRI>`, when present: facility × 8 + severity.
    pub priority: Option<u8>,
    /// 1 for RFC 5424; none for BSD syslog.
    pub version: Option<u8>,
    /// The event's own time, milliseconds since the epoch (UTC).
    pub timestamp_ms: Option<i64>,
    /// The sending host.
    pub hostname: Option<&'a str>,
    /// The program (RFC 5424 APP-NAME, BSD TAG).
    pub appname: Option<&'a str>,
    /// The process id (BSD `TAG[PID]`).
    pub procid: Option<&'a str>,
    /// The message type (RFC 5424 only).
    pub msgid: Option<&'a str>,
}

/// Facility names by code (RFC 5424 table 1, as ECS and rsyslog name them).
pub const FACILITIES: [&str; 24] = [
    "kern",
    "user",
    "mail",
    "daemon",
    "auth",
    "syslog",
    "lpr",
    "news",
    "uucp",
    "cron",
    "authpriv",
    "ftp",
    "ntp",
    "security",
    "console",
    "solaris-cron",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
];

/// Severity names by code (RFC 5424 table 2).
pub const SEVERITIES: [&str; 8] = [
    "Emergency",
    "Alert",
    "Critical",
    "Error",
    "Warning",
    "Notice",
    "Informational",
    "Debug",
];

impl<'a> SyslogHeader<'a> {
    /// The header of `line`; with `need_pri`, only a line that starts with
    /// `<PRI>` has one (`parse = "auto"`).
    pub fn parse(line: &'a [u8], need_pri: bool) -> Option<SyslogHeader<'a>> {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t,
            // The header is ASCII; a message with bad bytes still has one.
            Err(e) => std::str::from_utf8(&line[..e.valid_up_to()]).ok()?,
        };
        let (priority, rest) = match pri(text) {
            Some((p, rest)) => (Some(p), rest),
            None if need_pri => return None,
            None => (None, text),
        };
        let header = match rest.strip_prefix("1 ") {
            Some(r) => rfc5424(r),
            None => bsd(rest),
        };
        header.map(|h| SyslogHeader { priority, ..h })
    }

    /// Facility code, from `<PRI>`.
    pub fn facility(&self) -> Option<u8> {
        self.priority.map(|p| p >> 3)
    }

    /// Severity code, from `<PRI>`.
    pub fn severity(&self) -> Option<u8> {
        self.priority.map(|p| p & 7)
    }
}

/// `<N>` with N in 0..=191 (no leading zeros but `<0>`), and the rest.
fn pri(t: &str) -> Option<(u8, &str)> {
    let rest = t.strip_prefix('<')?;
    let close = rest.find('>')?;
    let digits = &rest[..close];
    if digits.is_empty()
        || digits.len() > 3
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    let n: u16 = digits.parse().ok()?;
    (n <= 191).then(|| (n as u8, &rest[close + 1..]))
}

fn nil(f: &str) -> Option<&str> {
    (f != "-" && !f.is_empty()).then_some(f)
}

fn rfc5424(r: &str) -> Option<SyslogHeader<'_>> {
    let mut f = r.splitn(6, ' ');
    let ts = f.next()?;
    let (hostname, appname, procid, msgid) = (f.next()?, f.next()?, f.next()?, f.next()?);
    let timestamp_ms = if ts == "-" {
        None
    } else {
        Some(rfc3339_millis(ts)?)
    };
    Some(SyslogHeader {
        priority: None,
        version: Some(1),
        timestamp_ms,
        hostname: nil(hostname),
        appname: nil(appname),
        procid: nil(procid),
        msgid: nil(msgid),
    })
}

fn bsd(r: &str) -> Option<SyslogHeader<'_>> {
    let (timestamp_ms, rest) = if r.as_bytes().first()?.is_ascii_digit() {
        let (ts, rest) = r.split_once(' ')?;
        (rfc3339_millis(ts)?, rest)
    } else {
        (
            bsd_timestamp(r.get(..15)?, unix_millis_now())?,
            r.get(16..)?,
        )
    };
    // HOST TAG: MSG, or TAG: MSG when the sender left the host out
    // (`logger` to a local socket).
    let (first, after) = rest.split_once(' ').unwrap_or((rest, ""));
    let (hostname, tag) = if first.ends_with(':') || first.contains('[') {
        (None, first)
    } else {
        (Some(first), after.split(' ').next().unwrap_or(""))
    };
    let tag = tag.strip_suffix(':').unwrap_or(tag);
    let (appname, procid) = match tag.split_once('[') {
        Some((app, pid)) => (app, pid.strip_suffix(']')),
        None => (tag, None),
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic());
    Some(SyslogHeader {
        priority: None,
        version: None,
        timestamp_ms: Some(timestamp_ms),
        hostname: hostname.filter(|h| token(h)),
        appname: Some(appname).filter(|a| token(a)),
        procid: procid.filter(|p| token(p)),
        msgid: None,
    })
}

/// `Mmm dd hh:mm:ss` (day space-padded) in the year that puts it at most a
/// day after `now_ms`.
fn bsd_timestamp(t: &str, now_ms: i64) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = t.as_bytes();
    if b.len() != 15 || b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let month = MONTHS.iter().position(|m| *m == &t[..3])? as u32 + 1;
    let day: u32 = t[4..6].trim_start().parse().ok()?;
    let (h, m, s) = (num(&t[7..9])?, num(&t[10..12])?, num(&t[13..15])?);
    if !(1..=31).contains(&day) || h > 23 || m > 59 || s > 60 {
        return None;
    }
    let year = civil_year(now_ms.div_euclid(1000));
    let at = |y: i64| (days_from_civil(y, month, day) * 86_400 + h * 3600 + m * 60 + s) * 1000;
    Some(if at(year) > now_ms + 86_400_000 {
        at(year - 1)
    } else {
        at(year)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::rfc3339;

    fn ts(h: &SyslogHeader) -> String {
        let ms = h.timestamp_ms.unwrap();
        rfc3339(ms.div_euclid(1000), ms.rem_euclid(1000) as u32)
    }

    #[test]
    fn rfc5424_as_logger_writes_it() {
        let line = b"<13>1 2026-11-23T05:10:00.123456+01:00 collector1 sshd 4242 ID47 [x@1 a=\"b\"] Failed password from 203.0.113.9";
        let h = SyslogHeader::parse(line, true).unwrap();
        assert_eq!(h.priority, Some(13));
        assert_eq!((h.facility(), h.severity()), (Some(1), Some(5)));
        assert_eq!(h.version, Some(1));
        assert_eq!(ts(&h), "2026-11-23T04:10:00.123Z");
        assert_eq!(h.hostname, Some("collector1"));
        assert_eq!(h.appname, Some("sshd"));
        assert_eq!(h.procid, Some("4242"));
        assert_eq!(h.msgid, Some("ID47"));
        let nil = SyslogHeader::parse(b"<165>1 - - - - - - msg", true).unwrap();
        assert_eq!(
            (nil.hostname, nil.timestamp_ms, nil.facility()),
            (None, None, Some(20))
        );
    }

    #[test]
    fn bsd_shapes() {
        let now = unix_millis_now();
        // (line, need_pri, host, app, pid)
        type Case = (
            &'static [u8],
            bool,
            Option<&'static str>,
            Option<&'static str>,
            Option<&'static str>,
        );
        let cases: [Case; 5] = [
            (
                b"<13>Nov 23 05:10:00 collector1 root: hello 1.2.3.4",
                true,
                Some("collector1"),
                Some("root"),
                None,
            ),
            (
                b"<38>Jan  2 10:00:00 web sshd[812]: Accepted",
                true,
                Some("web"),
                Some("sshd"),
                Some("812"),
            ),
            (
                b"Nov 23 05:10:00 host CRON[99]: (root) CMD",
                false,
                Some("host"),
                Some("CRON"),
                Some("99"),
            ),
            (
                b"<13>Nov 23 05:10:00 root: no host",
                true,
                None,
                Some("root"),
                None,
            ),
            (
                b"2026-11-23T05:10:00.5+00:00 host app[1]: x",
                false,
                Some("host"),
                Some("app"),
                Some("1"),
            ),
        ];
        for (line, need_pri, host, app, pid) in cases {
            let h = SyslogHeader::parse(line, need_pri)
                .unwrap_or_else(|| panic!("{}", String::from_utf8_lossy(line)));
            assert_eq!((h.hostname, h.appname, h.procid), (host, app, pid));
            assert!(h.timestamp_ms.unwrap() <= now + 86_400_000);
        }
    }

    #[test]
    fn not_syslog() {
        for (line, need_pri) in [
            (&b"plain 1.2.3.4"[..], true),
            (b"<192>Nov 23 05:10:00 h a: x", true),
            (b"<013>Nov 23 05:10:00 h a: x", true),
            (b"Nov 99 05:10:00 h a: x", false),
            (b"{\"json\": 1}", false),
            (b"<13>1 yesterday h a p m - x", true),
        ] {
            assert_eq!(
                SyslogHeader::parse(line, need_pri),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            let _ = SyslogHeader::parse(&bytes, false);
            let _ = SyslogHeader::parse(&bytes, true);
        }
    }
}

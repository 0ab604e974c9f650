//! IDN labels to ASCII (`xn--` + RFC 3492 punycode).
//!
//! Only the encoder, and without IDNA 2003 nameprep mapping (the caller has
//! already lowercased): the `idna` crate would bring Unicode tables that cost
//! more build time than IDN feed entries are worth. A label that nameprep
//! would map differently (e.g. `ß`) therefore encodes as written.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;

/// Converts each non-ASCII label of `domain` to `xn--` form. `None` when a
/// label is empty or longer than 63 bytes once encoded.
pub fn to_ascii(domain: &str) -> Option<String> {
    let mut out = String::with_capacity(domain.len() + 8);
    for (i, label) in domain.split('.').enumerate() {
        if i > 0 {
            out.push('.');
        }
        let start = out.len();
        if label.is_ascii() {
            out.push_str(label);
        } else {
            out.push_str("xn--");
            encode(label, &mut out)?;
        }
        if out.len() - start > 63 || out.len() == start {
            return None;
        }
    }
    Some(out)
}

fn adapt(mut delta: u32, num_points: u32, first: bool) -> u32 {
    delta /= if first { DAMP } else { 2 };
    delta += delta / num_points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
}

fn digit(d: u32) -> char {
    (if d < 26 {
        b'a' + d as u8
    } else {
        b'0' + (d - 26) as u8
    }) as char
}

fn encode(label: &str, out: &mut String) -> Option<()> {
    let chars: Vec<u32> = label.chars().map(|c| c as u32).collect();
    let basic = chars.iter().filter(|&&c| c < 0x80).count() as u32;
    out.extend(label.chars().filter(char::is_ascii));
    if basic > 0 {
        out.push('-');
    }
    let (mut n, mut delta, mut bias, mut handled) = (0x80u32, 0u32, 72u32, basic);
    while (handled as usize) < chars.len() {
        let m = *chars.iter().filter(|&&c| c >= n).min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in &chars {
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = if k <= bias {
                        T_MIN
                    } else if k >= bias + T_MAX {
                        T_MAX
                    } else {
                        k - bias
                    };
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta += 1;
        n += 1;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::to_ascii;

    #[test]
    fn rfc3492_and_idn_examples() {
        assert_eq!(to_ascii("bücher.de").as_deref(), Some("xn--bcher-kva.de"));
        assert_eq!(
            to_ascii("münchen.example").as_deref(),
            Some("xn--mnchen-3ya.example")
        );
        assert_eq!(
            to_ascii("пример.рф").as_deref(),
            Some("xn--e1afmkfd.xn--p1ai")
        );
        assert_eq!(
            to_ascii("例え.テスト").as_deref(),
            Some("xn--r8jz45g.xn--zckzah")
        );
        assert_eq!(to_ascii("a..b"), None);
    }
}

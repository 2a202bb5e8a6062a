//! Personal data (PII) detection: payment card numbers, US social security numbers,
//! e-mail addresses and phone numbers. The `memories` table's `pii` option chooses what a
//! finding does (the same three values as `secrets`: [`super::SecretPolicy`]).
//!
//! | kind | what | shape (source) |
//! |---|---|---|
//! | `payment_card` | payment card number (PAN), digits alone or in groups of 4 (Amex 4-6-5, Diners 4-6-4) separated by a space or `-` | an issuer prefix (IIN: Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay, Mir, Maestro) of its length, and a valid Luhn check digit (ISO/IEC 7812) |
//! | `us_ssn` | US social security number `AAA-GG-SSSS` (or 9 digits after `SSN`) | area not 000, 666 or 900-999, group not 00, serial not 0000 (SSA) |
//! | `email` | e-mail address | `local@domain.tld` (RFC 5322 dot-atom subset); not a `user@host:path` git remote, a `scheme://user@host` URL or an `ssh`/`scp` target |
//! | `phone_number` | phone number | `+` and a country code with 8-15 digits (E.164); NANP `(212) 555-0187`, `212-555-0187`, `212.555.0187`; 7-15 digits after `phone`, `tel`, `mobile`, `cell`, `fax`, `call`, `WhatsApp`, `SMS` |
//!
//! Numbers that only look like these are left alone: a 16-digit number failing Luhn or
//! without a card prefix, dates, versions, IP addresses, ISBNs, timestamps and snowflake ids.

use std::sync::LazyLock;

use regex::Regex;

use super::{Finding, Spans};

/// Every kind [`scan`] reports.
pub const KINDS: &[&str] = &["payment_card", "us_ssn", "email", "phone_number"];

/// One PII detector: a regex whose group `s` (or the whole match) holds the value, and a
/// check of the value in its text (`text`, `start..end` of the value).
struct Detector {
    kind: &'static str,
    re: Option<Regex>,
    accept: fn(&str, usize, usize) -> bool,
}

/// Compiles `p` with ASCII `\b`, `\d` and `\s` (the values are ASCII; Unicode classes
/// would make the automaton larger and slower on every text).
fn re(p: &str) -> Option<Regex> {
    let p = p
        .replace(r"\b", r"(?-u:\b)")
        .replace(r"\d", "[0-9]")
        .replace(r"\s", r"[ \t\r\n]");
    Regex::new(&p).ok()
}

static DETECTORS: LazyLock<Vec<Detector>> = LazyLock::new(|| {
    vec![
        Detector {
            kind: "payment_card",
            re: re(concat!(
                r"\b(?:\d{4}(?: \d{4}){2,3}(?: \d{1,3})?|\d{4}(?:-\d{4}){2,3}(?:-\d{1,3})?",
                r"|\d{4} \d{6} \d{4,5}|\d{4}-\d{6}-\d{4,5}|\d{12,19})\b"
            )),
            accept: accept_card,
        },
        Detector {
            kind: "us_ssn",
            re: re(concat!(
                r"\b\d{3}-\d{2}-\d{4}\b",
                r"|(?i:\bssn|social security(?: number)?)\s*(?:#|no\.?|number)?\s*[:=]?\s*(?:is\s+)?(?P<s>\d{3} ?\d{2} ?\d{4})\b"
            )),
            accept: accept_ssn,
        },
        Detector {
            kind: "email",
            re: re(concat!(
                r"\b[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?",
                r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b"
            )),
            accept: accept_email,
        },
        Detector {
            kind: "phone_number",
            re: re(concat!(
                r"(?i:\b(?:phone|tel|telephone|mobile|cell|fax|call(?:\s+me)?|whatsapp|sms|signal)\b)",
                r"(?:\s*(?:number|no\.?|#))?(?:\s+is)?(?:\s+(?:on|at))?[\s:=]*",
                r"(?P<s>\+?\(?\d[\d ().\-]{5,20}\d)",
                r"|(?P<s2>\+\d{1,3}(?:[ .\-]?(?:\(\d{1,5}\)|\d{1,5})){2,6})",
                r"|(?P<s3>\(\d{3}\) ?\d{3}[ .\-]\d{4}|\b\d{3}[ .\-]\d{3}[ .\-]\d{4})\b"
            )),
            accept: accept_phone,
        },
    ]
});

/// The compiled detectors' kinds and regexes, for timings.
#[cfg(test)]
pub(super) fn regexes() -> Vec<(&'static str, &'static Regex)> {
    DETECTORS
        .iter()
        .filter_map(|d| d.re.as_ref().map(|r| (d.kind, r)))
        .collect()
}

/// Adds the PII in `text` to `found`, skipping spans that overlap `claimed` (secrets
/// found first) and recording its own spans there.
pub(super) fn scan(text: &str, claimed: &mut Spans, found: &mut Vec<Finding>) {
    for d in DETECTORS.iter() {
        let Some(re) = d.re.as_ref() else { continue };
        for caps in re.captures_iter(text) {
            let Some(m) = caps
                .name("s")
                .or_else(|| caps.name("s2"))
                .or_else(|| caps.name("s3"))
                .or_else(|| caps.get(0))
            else {
                continue;
            };
            let (start, end) = (m.start(), m.end());
            if claimed.overlaps(start, end) || !(d.accept)(text, start, end) {
                continue;
            }
            claimed.insert(start, end);
            found.push(Finding {
                kind: d.kind,
                start,
                end,
            });
        }
    }
}

/// The char before byte `i` of `text` (`None` at the start).
fn before(text: &str, i: usize) -> Option<char> {
    text[..i].chars().next_back()
}

/// The char at byte `i` of `text` (`None` at the end).
fn at(text: &str, i: usize) -> Option<char> {
    text[i..].chars().next()
}

/// Whether the number at `start..end` is glued to a longer dotted or dashed token
/// (`1.2.3456789012345`, `v4111-1111`, `/4111111111111111/`): part of a version, path
/// or identifier, not a number on its own.
fn glued(text: &str, start: usize, end: usize) -> bool {
    let prev = before(text, start);
    let next = at(text, end);
    let after_next = next.and_then(|c| at(text, end + c.len_utf8()));
    matches!(prev, Some('.' | '-' | '_' | '/' | '+' | ':' | '$' | '='))
        || matches!(next, Some('-' | '_' | '/' | ':'))
        || (matches!(next, Some('.' | ',')) && after_next.is_some_and(|c| c.is_ascii_digit()))
}

/// Luhn (mod 10) check of a string of ASCII digits (ISO/IEC 7812-1 annex B).
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.bytes().rev().enumerate() {
        let Some(d) = (c as char).to_digit(10) else {
            return false;
        };
        let d = if i % 2 == 1 {
            let x = d * 2;
            if x > 9 { x - 9 } else { x }
        } else {
            d
        };
        sum += d;
    }
    !digits.is_empty() && sum.is_multiple_of(10)
}

/// Whether `digits` starts with an issuer prefix (IIN) that issues cards of its length.
fn card_issuer(digits: &str) -> bool {
    let n = digits.len();
    let p = |k: usize| {
        digits
            .get(..k)
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0)
    };
    let (p2, p3, p4, p6) = (p(2), p(3), p(4), p(6));
    match digits.as_bytes().first() {
        // Visa.
        Some(b'4') => matches!(n, 13 | 16 | 19),
        // Mastercard 51-55 and 2221-2720; Mir 2200-2204.
        Some(b'5') if (51..=55).contains(&p2) => n == 16,
        Some(b'2') if (2221..=2720).contains(&p4) => n == 16,
        Some(b'2') if (2200..=2204).contains(&p4) => (16..=19).contains(&n),
        // Amex 34, 37; Diners 300-305, 36, 38, 39; JCB 3528-3589.
        Some(b'3') if p2 == 34 || p2 == 37 => n == 15,
        Some(b'3') if (300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39) => {
            (14..=19).contains(&n)
        }
        Some(b'3') if (3528..=3589).contains(&p4) => (16..=19).contains(&n),
        // Discover 6011, 644-649, 65, 622126-622925; UnionPay 62; Maestro 6304, 6759.
        Some(b'6')
            if p4 == 6011
                || (644..=649).contains(&p3)
                || p2 == 65
                || (622_126..=622_925).contains(&p6)
                || p2 == 62 =>
        {
            (16..=19).contains(&n)
        }
        Some(b'6') if p4 == 6304 || p4 == 6759 => (12..=19).contains(&n),
        // Maestro 50, 56-58.
        Some(b'5') if p2 == 50 || (56..=58).contains(&p2) => (12..=19).contains(&n),
        _ => false,
    }
}

fn accept_card(text: &str, start: usize, end: usize) -> bool {
    let digits: String = text[start..end]
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    !glued(text, start, end) && card_issuer(&digits) && luhn_valid(&digits)
}

/// A valid SSN area/group/serial (Social Security Administration): area not 000, 666 or
/// 900-999; group not 00; serial not 0000.
fn accept_ssn(text: &str, start: usize, end: usize) -> bool {
    let d: String = text[start..end]
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if d.len() != 9 || glued(text, start, end) {
        return false;
    }
    let (area, group, serial) = (&d[..3], &d[3..5], &d[5..]);
    area != "000" && area != "666" && !area.starts_with('9') && group != "00" && serial != "0000"
}

/// Commands whose `user@host` argument is a login, not an e-mail address.
const LOGIN_COMMANDS: &[&str] = &[
    "ssh",
    "scp",
    "sftp",
    "rsync",
    "mosh",
    "ssh-copy-id",
    "telnet",
];

fn accept_email(text: &str, start: usize, end: usize) -> bool {
    // `scheme://user@host` (URL userinfo) and `git@github.com:org/repo` (scp-style remote).
    if text[..start].ends_with("://") {
        return false;
    }
    if at(text, end) == Some(':')
        && at(text, end + 1).is_some_and(|c| c.is_ascii_alphanumeric() || "~/._".contains(c))
    {
        return false;
    }
    // `ssh deploy@build1.acme.internal`: a login on the command line.
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..start];
    !line
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"' || c == '`')
        .any(|w| LOGIN_COMMANDS.contains(&w))
}

fn accept_phone(text: &str, start: usize, end: usize) -> bool {
    let v = &text[start..end];
    let digits = v.chars().filter(char::is_ascii_digit).count();
    let tel_uri = start >= 4 && text.as_bytes()[start - 4..start].eq_ignore_ascii_case(b"tel:");
    if !(7..=15).contains(&digits) || (glued(text, start, end) && !tel_uri) {
        return false;
    }
    // A date or time after `call` (`call 2024-05-07`), a decimal, an IP address.
    let groups: Vec<&str> = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    let dots = v.matches('.').count();
    if dots >= 2 && groups.iter().all(|g| g.len() <= 3) && !v.starts_with('+') {
        return false;
    }
    if v.len() == 10 && groups.len() == 3 && groups[0].len() == 4 {
        return false;
    }
    // A NANP number without `+`: area and exchange codes start with 2-9.
    if !v.starts_with('+') && groups.len() == 3 && digits == 10 {
        let ok = |g: &str| g.starts_with(|c: char| ('2'..='9').contains(&c));
        if groups[0].len() == 3 && groups[1].len() == 3 && !(ok(groups[0]) && ok(groups[1])) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(&'static str, String)> {
        let mut claimed = Spans::default();
        let mut found = Vec::new();
        scan(text, &mut claimed, &mut found);
        found
            .iter()
            .map(|f| (f.kind, text[f.start..f.end].to_string()))
            .collect()
    }

    #[test]
    fn luhn() {
        // The Luhn example of ISO/IEC 7812 and Wikipedia: 7992739871 + check digit 3.
        assert!(luhn_valid("79927398713"));
        assert!(!luhn_valid("79927398710"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("12a4"));
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        // Visa test number 4111 1111 1111 1111 passes Luhn; changing its last digit fails.
        let visa = format!("{}{}", "4111 1111 ", "1111 1111");
        assert_eq!(
            kinds(&format!("card {visa} exp 09/28")),
            [("payment_card", visa.clone())]
        );
        assert!(kinds(&format!("card {}2 exp", &visa[..18])).is_empty());
        // Luhn-valid but no issuer starts with 1 (snowflake ids, timestamps).
        assert!(kinds("id 1000000000000009 and 1186164976542346248").is_empty());
        // Part of a version or a decimal.
        assert!(kinds(&format!("v1.{}", visa.replace(' ', ""))).is_empty());
    }

    #[test]
    fn ssn_excludes_invalid_numbers() {
        assert_eq!(
            kinds("SSN 123-45-6789"),
            [("us_ssn", "123-45-6789".to_string())]
        );
        assert_eq!(
            kinds("ssn: 123456789"),
            [("us_ssn", "123456789".to_string())]
        );
        for bad in [
            "000-12-3456",
            "666-12-3456",
            "912-12-3456",
            "123-00-4567",
            "123-45-0000",
        ] {
            assert!(kinds(&format!("id {bad}")).is_empty(), "{bad}");
        }
        assert!(kinds("range 123-45-6789-01").is_empty());
    }

    #[test]
    fn emails_but_not_logins_or_remotes() {
        assert_eq!(
            kinds("write to ann.lee+x@mail.example.org."),
            [("email", "ann.lee+x@mail.example.org".to_string())]
        );
        for clean in [
            "git remote add origin git@github.com:acme/x.git",
            "ssh://git@github.com/acme/x.git",
            "ssh deploy@build1.acme.internal uptime",
            "npm i lodash@4.17.21 @types/node@20.1.0",
            "bob@laptop:~/src$ ls",
        ] {
            assert!(kinds(clean).is_empty(), "{clean}: {:?}", kinds(clean));
        }
    }

    #[test]
    fn phones_but_not_dates_or_addresses() {
        for (text, phone) in [
            ("call me on +1 415 555 2671 after six", "+1 415 555 2671"),
            ("support: (212) 555-0187", "(212) 555-0187"),
            ("or 646.555.0142", "646.555.0142"),
            ("phone: 030 1234567", "030 1234567"),
            ("tel:+442079460958", "+442079460958"),
            ("Bob (+44 20 7946 0958) called", "+44 20 7946 0958"),
            ("ring +49 (0)30 1234567 today", "+49 (0)30 1234567"),
        ] {
            assert_eq!(kinds(text), [("phone_number", phone.to_string())], "{text}");
        }
        for clean in [
            "ip 192.168.100.200 and 10.0.0.1",
            "call 2024-05-07 at 12:30",
            "ports 1000-2000 and 123-456-7890 is an id with area code 123",
            "ISBN 978-3-16-148410-0",
            "p50 1.234 ms, version 1.2.3.4567",
            "x+1 and n+12",
        ] {
            assert!(kinds(clean).is_empty(), "{clean}: {:?}", kinds(clean));
        }
    }
}

//! The PII detectors.
//!
//! Each detector is a small set of linear-time regexes that propose candidates, followed by a
//! check in code (checksum, address parsing, digit count, what touches the candidate) that the
//! regex cannot express (see `candidates` for how a search continues after a match).
//!
//! Candidates of all detectors are then put in one list and the non-overlapping ones kept,
//! earliest start first, then the longest, then by detector priority (card, IBAN, email, IP,
//! phone, the custom patterns in order): a card number is not also a phone number, and an
//! address is not also a date.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;

use super::PiiDetector;

/// One piece of PII found in a text: a byte range, its rule (`pii.email`, `pii.custom.x`) and
/// its placeholder label (`EMAIL`, `X`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub start: usize,
    pub end: usize,
    pub rule: String,
    pub label: String,
}

/// Compiles one of the detectors' constant patterns. A unit test forces every static below, so
/// a pattern that does not compile fails the build's tests rather than a request.
#[allow(clippy::expect_used)]
fn constant(pattern: &str) -> Regex {
    Regex::new(pattern).expect("a detector's constant pattern compiles")
}

/// A practical subset of RFC 5322: dot-separated atoms of letters, digits and `_%+-` (no
/// quoted parts or comments), a domain of letter/digit/hyphen labels and a top-level domain of
/// at least two letters. The rarer atom characters (`'`, `=`, `{`, `|`, ...) are left out: in
/// running text they are far more often quotes, `key=value` or table borders than part of an
/// address.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    constant(
        r"[A-Za-z0-9_%+-]{1,64}(?:\.[A-Za-z0-9_%+-]{1,64}){0,8}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,63}",
    )
});

/// Card numbers: a bare run of 13-19 digits, or groups of 3-6 digits joined by one kind of
/// separator (a grouped match may run past the card into a following number; see `cards`).
static CARD_BARE: LazyLock<Regex> = LazyLock::new(|| constant(r"[0-9]{13,19}"));
static CARD_SPACED: LazyLock<Regex> = LazyLock::new(|| constant(r"[0-9]{3,6}(?: [0-9]{3,6}){1,6}"));
static CARD_DASHED: LazyLock<Regex> = LazyLock::new(|| constant(r"[0-9]{3,6}(?:-[0-9]{3,6}){1,6}"));

/// IBANs: compact, or grouped in fours after the country and check digits, the last group
/// shorter. Letters in either case.
static IBAN_COMPACT: LazyLock<Regex> =
    LazyLock::new(|| constant(r"[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]{11,30}"));
static IBAN_GROUPED: LazyLock<Regex> = LazyLock::new(|| {
    constant(r"[A-Za-z]{2}[0-9]{2}(?: [A-Za-z0-9]{4}){2,7}(?: [A-Za-z0-9]{1,3})?")
});

static IPV4: LazyLock<Regex> =
    LazyLock::new(|| constant(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}"));
/// Anything shaped like an IPv6 address (hex groups and colons, possibly an IPv4 tail);
/// `Ipv6Addr` decides. The IPv4 tail comes first so that it wins over a bare hex group.
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    constant(
        r"(?:[0-9A-Fa-f]{1,4}:|:){2,8}(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}|[0-9A-Fa-f]{1,4})?",
    )
});

/// International numbers: `+`, a country code and groups that may be separated by a space,
/// dot or dash, with an optional trunk or area part in parentheses.
static PHONE_INTL: LazyLock<Regex> =
    LazyLock::new(|| constant(r"\+[0-9]{1,4}(?:[ .-]?\([0-9]{1,4}\))?(?:[ .-]?[0-9]{1,6}){1,7}"));
/// North American numbers: `(555) 123-4567`, `555-123-4567`, `555.123.4567`, `1 555 123 4567`.
static PHONE_NANP: LazyLock<Regex> = LazyLock::new(|| {
    constant(r"(?:\+?1[ .-]?)?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}")
});
/// Other national numbers written in groups with one kind of separator (`020 7946 0958`,
/// `06-12-34-56-78`, `(030) 1234 5678`). Dots are left out: dotted groups are versions and
/// addresses far more often than phone numbers.
static PHONE_SPACED: LazyLock<Regex> =
    LazyLock::new(|| constant(r"(?:\([0-9]{2,5}\)|[0-9]{2,8})(?: [0-9]{2,8}){1,5}"));
static PHONE_DASHED: LazyLock<Regex> =
    LazyLock::new(|| constant(r"(?:\([0-9]{2,5}\)|[0-9]{2,8})(?:-[0-9]{2,8}){1,5}"));

/// A candidate before overlaps are resolved; `priority` orders candidates with the same span.
struct Candidate {
    start: usize,
    end: usize,
    priority: usize,
}

/// Every finding of `detectors` and `custom` (rule, label, pattern) in `text`, in order and
/// without overlaps.
pub fn find_pii(
    text: &str,
    detectors: &[PiiDetector],
    custom: &[(String, String, regex::Regex)],
) -> Vec<Finding> {
    // Priorities are fixed whatever the order of `detectors`; custom patterns come after.
    const BUILT_IN: [PiiDetector; 5] = [
        PiiDetector::Card,
        PiiDetector::Iban,
        PiiDetector::Email,
        PiiDetector::Ip,
        PiiDetector::Phone,
    ];
    let mut candidates = Vec::new();
    // Cards, IBANs and phone numbers need a digit, an email an '@', an address a digit or a
    // ':'; a text without them skips those regexes altogether.
    let has_digit = text.bytes().any(|b| b.is_ascii_digit());
    for (priority, detector) in BUILT_IN.iter().enumerate() {
        if !detectors.contains(detector) {
            continue;
        }
        let mut push = |start: usize, end: usize| {
            candidates.push(Candidate {
                start,
                end,
                priority,
            })
        };
        match detector {
            PiiDetector::Email if text.contains('@') => emails(text, &mut push),
            PiiDetector::Card if has_digit => cards(text, &mut push),
            PiiDetector::Iban if has_digit => ibans(text, &mut push),
            PiiDetector::Ip if has_digit || text.contains(':') => ips(text, &mut push),
            PiiDetector::Phone if has_digit => phones(text, &mut push),
            _ => {}
        }
    }
    for (i, (_, _, regex)) in custom.iter().enumerate() {
        candidates.extend(
            regex
                .find_iter(text)
                .filter(|m| !m.is_empty())
                .map(|m| Candidate {
                    start: m.start(),
                    end: m.end(),
                    priority: BUILT_IN.len() + i,
                }),
        );
    }
    candidates.sort_unstable_by(|a, b| {
        a.start
            .cmp(&b.start)
            .then(b.end.cmp(&a.end))
            .then(a.priority.cmp(&b.priority))
    });
    let mut findings: Vec<Finding> = Vec::new();
    for c in candidates {
        if findings.last().is_some_and(|last| c.start < last.end) {
            continue;
        }
        let (rule, label) = match BUILT_IN.get(c.priority) {
            Some(d) => (d.rule().to_owned(), d.label().to_owned()),
            None => match custom.get(c.priority - BUILT_IN.len()) {
                Some((rule, label, _)) => (rule.clone(), label.clone()),
                None => continue,
            },
        };
        findings.push(Finding {
            start: c.start,
            end: c.end,
            rule,
            label,
        });
    }
    findings
}

/// Runs `regex` over `text`, handing each match to `accept`, which reports the span it keeps
/// (possibly a shorter one) or `None`. The search then resumes one character after the match's
/// start, accepted or not: a valid value can start inside a rejected match ("123 4111 1111 1111
/// 1111" holds a card after "123 "), and an accepted one can hide a better one that starts
/// later ("::1 555.123.4567" is an address and a phone number, not an address and
/// "1 555.123.4567"). Overlaps are resolved in [`find_pii`]; every pattern is bounded in
/// length, so this costs at most the longest match per character.
fn candidates(
    regex: &Regex,
    text: &str,
    mut accept: impl FnMut(usize, usize) -> Option<(usize, usize)>,
    push: &mut dyn FnMut(usize, usize),
) {
    let mut at = 0;
    while at < text.len()
        && let Some(m) = regex.find_at(text, at)
    {
        if let Some((start, end)) = accept(m.start(), m.end()) {
            push(start, end);
        }
        at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
    }
}

fn byte_before(text: &str, at: usize, back: usize) -> Option<u8> {
    at.checked_sub(back).map(|i| text.as_bytes()[i])
}

fn byte_after(text: &str, end: usize, ahead: usize) -> Option<u8> {
    text.as_bytes().get(end + ahead).copied()
}

fn is_word(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_digit(b: Option<u8>) -> bool {
    b.is_some_and(|b| b.is_ascii_digit())
}

/// Whether `text[start..end]` stands on its own as a number: no letter, digit or `_` touches it
/// (ASCII only, so text in scripts without spaces still finds its numbers), and it does not
/// continue a dotted or dashed digit sequence on either side ("1.2.3.4.5", "12-555-123-4567").
fn stands_alone(text: &str, start: usize, end: usize) -> bool {
    let before = byte_before(text, start, 1);
    let after = byte_after(text, end, 0);
    if is_word(before) || is_word(after) {
        return false;
    }
    let continues =
        |b: Option<u8>, next: Option<u8>| matches!(b, Some(b'.' | b'-')) && is_digit(next);
    !continues(before, byte_before(text, start, 2)) && !continues(after, byte_after(text, end, 1))
}

fn emails(text: &str, push: &mut dyn FnMut(usize, usize)) {
    // The regex takes the longest local part it can, so nothing before a match belongs to it
    // unless the local part is over-long; a domain that runs on into a word is not an address.
    candidates(
        &EMAIL,
        text,
        |start, end| {
            // A dot before the match belongs to the address only if an atom precedes it
            // ("a.b.c@x.io" with too many atoms); a sentence's dots or an ellipsis do not.
            let local_char = |b: Option<u8>| {
                b.is_some_and(|b| b.is_ascii_alphanumeric() || b"_%+-".contains(&b))
            };
            let before = byte_before(text, start, 1);
            let longer = local_char(before)
                || (before == Some(b'.') && local_char(byte_before(text, start, 2)));
            let after = byte_after(text, end, 0);
            let runs_on = is_word(after) || after == Some(b'-');
            (!longer && !runs_on).then_some((start, end))
        },
        push,
    );
}

fn cards(text: &str, push: &mut dyn FnMut(usize, usize)) {
    let check = |start: usize, end: usize| {
        let digits: String = text[start..end]
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        (13..=19).contains(&digits.len()) && luhn_valid(&digits) && stands_alone(text, start, end)
    };
    candidates(
        &CARD_BARE,
        text,
        |start, end| check(start, end).then_some((start, end)),
        push,
    );
    for (regex, separator) in [(&*CARD_SPACED, ' '), (&*CARD_DASHED, '-')] {
        // A grouped match may take a following number too ("4111 1111 1111 1111 2024", an
        // expiry): try it whole, then without its last groups.
        candidates(
            regex,
            text,
            |start, mut end| {
                loop {
                    if check(start, end) {
                        return Some((start, end));
                    }
                    end = start + text[start..end].rfind(separator)?;
                }
            },
            push,
        );
    }
}

fn ibans(text: &str, push: &mut dyn FnMut(usize, usize)) {
    let check = |start: usize, end: usize| {
        iban_valid(&text[start..end])
            && !is_word(byte_before(text, start, 1))
            && !is_word(byte_after(text, end, 0))
    };
    candidates(
        &IBAN_COMPACT,
        text,
        |start, end| check(start, end).then_some((start, end)),
        push,
    );
    // A grouped match may take a following word of four letters: try it shorter too.
    candidates(
        &IBAN_GROUPED,
        text,
        |start, mut end| {
            loop {
                if check(start, end) {
                    return Some((start, end));
                }
                end = start + text[start..end].rfind(' ')?;
            }
        },
        push,
    );
}

fn ips(text: &str, push: &mut dyn FnMut(usize, usize)) {
    candidates(
        &IPV4,
        text,
        |start, end| {
            (text[start..end].parse::<Ipv4Addr>().is_ok() && stands_alone(text, start, end))
                .then_some((start, end))
        },
        push,
    );
    candidates(
        &IPV6,
        text,
        |start, end| {
            let touches = |b: Option<u8>| is_word(b) || b == Some(b':');
            if touches(byte_before(text, start, 1)) || byte_before(text, start, 1) == Some(b'.') {
                return None;
            }
            // A trailing colon is punctuation ("reach 2001:db8::1: it is down") unless it
            // is part of "::".
            let matched_end = end;
            let mut end = end;
            if text[start..end].ends_with(':') && !text[start..end].ends_with("::") {
                end -= 1;
            }
            let candidate = &text[start..end];
            let address = candidate.parse::<Ipv6Addr>().ok()?;
            // "::" and "::1" carry nothing personal, and "a::b" is as likely a path in code;
            // an address needs two non-zero groups (or an IPv4 tail).
            let groups = address.segments().iter().filter(|s| **s != 0).count();
            let after = byte_after(text, matched_end, 0);
            let v4_tail = candidate.contains('.');
            let runs_on = touches(after)
                || (after == Some(b'.') && (is_digit(byte_after(text, matched_end, 1)) || v4_tail));
            (!runs_on && (groups >= 2 || v4_tail)).then_some((start, end))
        },
        push,
    );
}

fn phones(text: &str, push: &mut dyn FnMut(usize, usize)) {
    let digit_count =
        |start: usize, end: usize| text[start..end].bytes().filter(u8::is_ascii_digit).count();
    // `+` numbers: 8-15 digits with the country code.
    candidates(
        &PHONE_INTL,
        text,
        |start, end| {
            ((8..=15).contains(&digit_count(start, end)) && stands_alone(text, start, end))
                .then_some((start, end))
        },
        push,
    );
    candidates(
        &PHONE_NANP,
        text,
        |start, end| {
            let plus = text[start..end].starts_with('+');
            let digits = digit_count(start, end);
            let ok = if plus {
                (8..=15).contains(&digits)
            } else {
                (10..=15).contains(&digits)
            };
            (ok && stands_alone(text, start, end)).then_some((start, end))
        },
        push,
    );
    // The grouped national forms are the weakest evidence, so they must be a whole run of
    // groups: not the tail of a longer grouped number such as a card that failed its check.
    for regex in [&*PHONE_SPACED, &*PHONE_DASHED] {
        candidates(
            regex,
            text,
            |start, end| {
                let tail_of_run = matches!(byte_before(text, start, 1), Some(b' ' | b'-' | b'.'))
                    && is_digit(byte_before(text, start, 2));
                ((10..=15).contains(&digit_count(start, end))
                    && !tail_of_run
                    && stands_alone(text, start, end))
                .then_some((start, end))
            },
            push,
        );
    }
}

/// Whether `digits` (ASCII digits only) pass the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether `candidate` (spaces allowed) is an IBAN with a valid mod-97 checksum.
pub fn iban_valid(candidate: &str) -> bool {
    let compact = || candidate.bytes().filter(|b| *b != b' ');
    let len = compact().count();
    if !(15..=34).contains(&len) {
        return false;
    }
    let mut head = compact();
    let country = head.by_ref().take(2).all(|b| b.is_ascii_alphabetic());
    let check = head.by_ref().take(2).all(|b| b.is_ascii_digit());
    if !country || !check || !head.all(|b| b.is_ascii_alphanumeric()) {
        return false;
    }
    // ISO 7064 mod 97-10 over the account part followed by the country and check digits, with
    // letters as two-digit numbers (A = 10), computed digit by digit to stay in a u32.
    let mut remainder: u32 = 0;
    for b in compact().skip(4).chain(compact().take(4)) {
        let value = match b {
            b'0'..=b'9' => u32::from(b - b'0'),
            _ => u32::from(b.to_ascii_uppercase() - b'A') + 10,
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_patterns_compile() {
        for regex in [
            &EMAIL,
            &CARD_BARE,
            &CARD_SPACED,
            &CARD_DASHED,
            &IBAN_COMPACT,
            &IBAN_GROUPED,
            &IPV4,
            &IPV6,
            &PHONE_INTL,
            &PHONE_NANP,
            &PHONE_SPACED,
            &PHONE_DASHED,
        ] {
            assert!(!regex.as_str().is_empty());
        }
    }

    #[test]
    fn luhn() {
        assert!(luhn_valid("4111111111111111"));
        assert!(luhn_valid("378282246310005"));
        assert!(luhn_valid("5500000000000004"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid(""));
        assert!(!luhn_valid("4111 1111 1111 1111"));
    }

    #[test]
    fn iban_checksum() {
        assert!(iban_valid("DE89 3704 0044 0532 0130 00"));
        assert!(iban_valid("GB82WEST12345698765432"));
        assert!(iban_valid("gb82west12345698765432"));
        assert!(iban_valid("FR1420041010050500013M02606"));
        assert!(!iban_valid("DE89 3704 0044 0532 0130 01"));
        assert!(!iban_valid("DE89"));
        assert!(!iban_valid("1289 3704 0044 0532 0130 00"));
        assert!(!iban_valid("DE8X 3704 0044 0532 0130 00"));
        assert!(!iban_valid("DE89 3704 0044 0532 0130 0é"));
    }
}

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

/// The matched texts of `detector` alone in `text`.
fn found(text: &str, detector: PiiDetector) -> Vec<&str> {
    find_pii(text, &[detector], &[])
        .into_iter()
        .map(|f| {
            assert_eq!(f.rule, detector.rule());
            assert_eq!(f.label, detector.label());
            &text[f.start..f.end]
        })
        .collect()
}

/// (rule, matched text) of every detector in `text`.
fn all(text: &str) -> Vec<(String, &str)> {
    find_pii(text, &PiiDetector::all(), &[])
        .into_iter()
        .map(|f| (f.rule, &text[f.start..f.end]))
        .collect()
}

fn assert_finds(detector: PiiDetector, cases: &[(&str, &[&str])]) {
    for (text, expected) in cases {
        assert_eq!(&found(text, detector), expected, "{detector:?} in {text:?}");
    }
}

fn assert_none(detector: PiiDetector, texts: &[&str]) {
    for text in texts {
        assert_eq!(
            found(text, detector),
            Vec::<&str>::new(),
            "{detector:?} in {text:?}"
        );
    }
}

#[test]
fn email() {
    assert_finds(
        PiiDetector::Email,
        &[
            (
                "mail me at jane.doe@example.com.",
                &["jane.doe@example.com"],
            ),
            (
                "(john+tag@mail.example.co.uk), or",
                &["john+tag@mail.example.co.uk"],
            ),
            ("'jane@example.com'", &["jane@example.com"]),
            (
                "<first_last-99@sub.do-main.io>",
                &["first_last-99@sub.do-main.io"],
            ),
            ("a@b.de and c.d@e.fr", &["a@b.de", "c.d@e.fr"]),
            ("wait...jane@example.com", &["jane@example.com"]),
            ("mailto:jane@example.com?subject=hi", &["jane@example.com"]),
            (
                "email=jane@example.com|{bob@example.org}",
                &["jane@example.com", "bob@example.org"],
            ),
        ],
    );
    assert_none(
        PiiDetector::Email,
        &[
            "user@localhost",
            "ping @handle on chat",
            "a@b",
            "jane@example.c",
            "jane@ example.com",
            "jane@example.com2",
            "@example.com",
        ],
    );
}

#[test]
fn phone() {
    assert_finds(
        PiiDetector::Phone,
        &[
            ("call (555) 123-4567 now", &["(555) 123-4567"]),
            ("call 555-123-4567.", &["555-123-4567"]),
            ("555.123.4567", &["555.123.4567"]),
            ("tel: +1 555 123 4567, thanks", &["+1 555 123 4567"]),
            ("1-555-123-4567", &["1-555-123-4567"]),
            ("+44 20 7946 0958", &["+44 20 7946 0958"]),
            ("+4915112345678", &["+4915112345678"]),
            ("+49 (0)30 1234567", &["+49 (0)30 1234567"]),
            ("+33 1 23 45 67 89", &["+33 1 23 45 67 89"]),
            ("office 020 7946 0958 ext", &["020 7946 0958"]),
            ("电话555-123-4567。", &["555-123-4567"]),
        ],
    );
    assert_none(
        PiiDetector::Phone,
        &[
            "on 2024-01-15 at noon",
            "version 1.2.3",
            "ISO 9001 certified",
            "at 12:30:45 sharp",
            "2024-01-15 12:30",
            "call 555-1234",
            "order 1234567890 shipped",
            "+123",
            "+12 345",
            "555-123-4567-8",
            "a555-123-4567",
        ],
    );
}

#[test]
fn card() {
    assert_finds(
        PiiDetector::Card,
        &[
            ("card 4111 1111 1111 1111, exp", &["4111 1111 1111 1111"]),
            ("5500-0000-0000-0004", &["5500-0000-0000-0004"]),
            ("amex 378282246310005.", &["378282246310005"]),
            ("amex 3782 822463 10005", &["3782 822463 10005"]),
            ("4111 1111 1111 1111 2024", &["4111 1111 1111 1111"]),
            ("ref 123 4111 1111 1111 1111", &["4111 1111 1111 1111"]),
            (
                "4111111111111111 and 5500 0000 0000 0004",
                &["4111111111111111", "5500 0000 0000 0004"],
            ),
        ],
    );
    assert_none(
        PiiDetector::Card,
        &[
            "4111 1111 1111 1112",
            "4111111111111112",
            "number 123456789012",
            "24111111111111111111",
            "x4111111111111111",
            "4111-1111 1111-1111",
            "0.4111111111111111",
        ],
    );
}

#[test]
fn iban() {
    assert_finds(
        PiiDetector::Iban,
        &[
            (
                "DE89 3704 0044 0532 0130 00",
                &["DE89 3704 0044 0532 0130 00"],
            ),
            (
                "pay to GB82WEST12345698765432.",
                &["GB82WEST12345698765432"],
            ),
            (
                "IBAN: FR1420041010050500013M02606, thanks",
                &["FR1420041010050500013M02606"],
            ),
            (
                "gb82 west 1234 5698 7654 32",
                &["gb82 west 1234 5698 7654 32"],
            ),
            ("BE68 5390 0754 7034 from me", &["BE68 5390 0754 7034"]),
        ],
    );
    assert_none(
        PiiDetector::Iban,
        &[
            "DE89 3704 0044 0532 0130 01",
            "XX00 1234 5678",
            "GB82WEST1234",
            "GB82WEST12345698765432X",
            "XGB82WEST12345698765432",
            "DE89  3704 0044 0532 0130 00",
        ],
    );
}

#[test]
fn ip() {
    assert_finds(
        PiiDetector::Ip,
        &[
            ("host 192.168.1.20.", &["192.168.1.20"]),
            ("dns 8.8.8.8, then", &["8.8.8.8"]),
            ("http://10.0.0.1:8080/x", &["10.0.0.1"]),
            ("2001:db8::1", &["2001:db8::1"]),
            (
                "via fe80::1ff:fe23:4567:890a.",
                &["fe80::1ff:fe23:4567:890a"],
            ),
            ("[2001:db8::1]:443", &["2001:db8::1"]),
            ("mapped ::ffff:192.0.2.1 here", &["::ffff:192.0.2.1"]),
            (
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                &["2001:0db8:85a3:0000:0000:8a2e:0370:7334"],
            ),
            ("reach 2001:db8::1: it is down", &["2001:db8::1"]),
        ],
    );
    assert_none(
        PiiDetector::Ip,
        &[
            "999.1.1.1",
            "version 1.2.3",
            "at 12:30",
            "at 12:30:45",
            "1.2.3.4.5",
            "v1.2.3.4",
            "std::vector",
            "a :: b",
            "00:1a:2b:3c:4d:5e",
        ],
    );
}

#[test]
fn overlaps_keep_one_finding() {
    let card = |s: &str| vec![("pii.card".to_owned(), s.to_owned())];
    let owned = |v: Vec<(String, &str)>| {
        v.into_iter()
            .map(|(r, s)| (r, s.to_owned()))
            .collect::<Vec<_>>()
    };
    // A card number also looks like a grouped phone number; the card wins.
    assert_eq!(
        owned(all("4111 1111 1111 1111")),
        card("4111 1111 1111 1111")
    );
    assert_eq!(owned(all("3782 822463 10005")), card("3782 822463 10005"));
    // A card that fails Luhn is not reported as a phone number either.
    assert_eq!(all("4111 1111 1111 1112"), vec![]);
    assert_eq!(
        all("DE89 3704 0044 0532 0130 00"),
        vec![("pii.iban".to_owned(), "DE89 3704 0044 0532 0130 00")]
    );
    assert_eq!(
        all("192.168.100.200"),
        vec![("pii.ip".to_owned(), "192.168.100.200")]
    );
    assert_eq!(
        all("jane@example.com, +1 555 123 4567, 10.0.0.1 and 4111111111111111."),
        vec![
            ("pii.email".to_owned(), "jane@example.com"),
            ("pii.phone".to_owned(), "+1 555 123 4567"),
            ("pii.ip".to_owned(), "10.0.0.1"),
            ("pii.card".to_owned(), "4111111111111111"),
        ]
    );
    // The order the detectors are listed in does not change the outcome.
    let reversed: Vec<_> = PiiDetector::all().into_iter().rev().collect();
    let text = "3782 822463 10005 or 555-123-4567";
    assert_eq!(
        find_pii(text, &reversed, &[]),
        find_pii(text, &PiiDetector::all(), &[])
    );
    // Findings are sorted and never overlap.
    let text = "x 4111 1111 1111 1111 2024 DE89 3704 0044 0532 0130 00 2001:db8::1 555.123.4567";
    let findings = find_pii(text, &PiiDetector::all(), &[]);
    assert_eq!(findings.len(), 4, "{findings:?}");
    assert!(findings.windows(2).all(|w| w[0].end <= w[1].start));
}

#[test]
fn custom_patterns() {
    let custom = vec![
        (
            "pii.custom.ticket".to_owned(),
            "TICKET".to_owned(),
            regex::Regex::new(r"TICKET-[0-9]{4}").expect("valid"),
        ),
        (
            "pii.custom.nanp".to_owned(),
            "NANP".to_owned(),
            regex::Regex::new(r"[0-9]{3}-[0-9]{3}-[0-9]{4}").expect("valid"),
        ),
        (
            "pii.custom.maybe".to_owned(),
            "MAYBE".to_owned(),
            regex::Regex::new(r"z*").expect("valid"),
        ),
    ];
    let text = "see TICKET-1234 and TICKET-9876, call 555-123-4567";
    let findings = find_pii(text, &PiiDetector::all(), &custom);
    let got: Vec<_> = findings
        .iter()
        .map(|f| (f.rule.as_str(), f.label.as_str(), &text[f.start..f.end]))
        .collect();
    // The same span as a built-in detector: the built-in wins. Empty matches are skipped.
    assert_eq!(
        got,
        vec![
            ("pii.custom.ticket", "TICKET", "TICKET-1234"),
            ("pii.custom.ticket", "TICKET", "TICKET-9876"),
            ("pii.phone", "PHONE", "555-123-4567"),
        ]
    );
    // Without the phone detector the custom pattern finds it.
    let findings = find_pii(text, &[PiiDetector::Email], &custom);
    assert_eq!(findings.last().expect("a finding").rule, "pii.custom.nanp");
}

fn record(pii: PiiPolicy) -> GuardrailRecord {
    GuardrailRecord {
        id: Uuid::nil(),
        name: "test".to_owned(),
        scope: GuardrailScope::Organization,
        scope_id: None,
        pii,
        blocked_terms: Vec::new(),
        max_prompt_tokens: None,
        allowed_tools: None,
    }
}

fn with_custom(name: &str, pattern: &str) -> GuardrailRecord {
    record(PiiPolicy {
        mode: PiiMode::Redact,
        custom: vec![CustomPattern {
            name: name.to_owned(),
            pattern: pattern.to_owned(),
        }],
        ..PiiPolicy::default()
    })
}

fn compile_error(record: GuardrailRecord) -> String {
    Guardrail::compile(record).expect_err("refused").0
}

#[test]
fn compile_refuses_bad_custom_patterns() {
    let e = compile_error(with_custom("x", r"(a)\1"));
    assert!(e.starts_with("pii.custom `x`"), "{e}");
    assert!(e.contains("no back-references or look-around"), "{e}");
    let e = compile_error(with_custom("x", r"(?=x)abc"));
    assert!(e.starts_with("pii.custom `x`"), "{e}");
    assert!(e.contains("look-around"), "{e}");
    let e = compile_error(with_custom("x", r"a*"));
    assert!(e.contains("pii.custom `x`") && e.contains("empty"), "{e}");
    let e = compile_error(with_custom("Bad-Name", r"abc"));
    assert!(e.contains("pii.custom name `Bad-Name`"), "{e}");
    let e = compile_error(with_custom("x", r"(?:\w{1000}){1000}"));
    assert!(
        e.starts_with("pii.custom `x`") && e.contains("too large"),
        "{e}"
    );
    let e = compile_error(with_custom("x", &"a".repeat(MAX_PATTERN_LEN + 1)));
    assert!(e.starts_with("pii.custom `x`"), "{e}");
    let e = compile_error(with_custom("x", "(unclosed"));
    assert!(
        e.starts_with("pii.custom `x`: the pattern does not compile"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    let mut twice = with_custom("x", "abc");
    twice.pii.custom.push(twice.pii.custom[0].clone());
    assert!(compile_error(twice).contains("used twice"));
    // A sound pattern compiles into its rule and label.
    let g = Guardrail::compile(with_custom("emp_id", r"EMP[0-9]{5}")).expect("compiles");
    let mut r = g.redactor();
    assert_eq!(r.scan("id EMP12345").as_deref(), Some("id [EMP_ID_1]"));
    assert_eq!(r.findings().get("pii.custom.emp_id"), Some(&1));
}

#[test]
fn compile_checks_the_other_fields() {
    let mut r = record(PiiPolicy::default());
    r.name = " ".to_owned();
    assert!(compile_error(r).starts_with("name"));
    let mut r = record(PiiPolicy::default());
    r.scope = GuardrailScope::Team;
    assert!(compile_error(r).starts_with("scope_id"));
    let mut r = record(PiiPolicy::default());
    r.blocked_terms = vec!["  ".to_owned()];
    assert!(compile_error(r).starts_with("blocked_terms"));
    let mut r = record(PiiPolicy::default());
    r.max_prompt_tokens = Some(0);
    assert!(compile_error(r).starts_with("max_prompt_tokens"));
}

#[test]
fn redact_mode_rewrites_with_stable_placeholders() {
    let g = Guardrail::compile(record(PiiPolicy {
        mode: PiiMode::Redact,
        restore: true,
        ..PiiPolicy::default()
    }))
    .expect("compiles");
    assert!(g.restores());
    let mut r = g.redactor();
    assert_eq!(
        r.scan("mail jane@example.com or john@example.com, again jane@example.com")
            .as_deref(),
        Some("mail [EMAIL_1] or [EMAIL_2], again [EMAIL_1]")
    );
    assert_eq!(
        r.scan("jane@example.com and 555-123-4567.").as_deref(),
        Some("[EMAIL_1] and [PHONE_1].")
    );
    assert_eq!(r.scan("nothing to see"), None);
    let counts: Vec<_> = r.findings().iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(counts, vec![("pii.email", 4), ("pii.phone", 1)]);
    let vault = r.into_vault();
    assert_eq!(vault.len(), 3);
    assert_eq!(
        vault
            .restore("Dear [EMAIL_2], [EMAIL_1] called from [PHONE_1].")
            .as_deref(),
        Some("Dear john@example.com, jane@example.com called from 555-123-4567.")
    );
    // The vault does not print what it keeps.
    assert!(!format!("{vault:?}").contains("jane"));
}

#[test]
fn block_and_off_modes_do_not_rewrite() {
    let text = "mail jane@example.com, card 4111 1111 1111 1111";
    let block = Guardrail::compile(record(PiiPolicy {
        mode: PiiMode::Block,
        ..PiiPolicy::default()
    }))
    .expect("compiles");
    let mut r = block.redactor();
    assert_eq!(r.scan(text), None);
    let counts: Vec<_> = r.findings().iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(counts, vec![("pii.card", 1), ("pii.email", 1)]);
    assert!(r.into_vault().is_empty());

    let off = Guardrail::compile(record(PiiPolicy::default())).expect("compiles");
    let mut r = off.redactor();
    assert_eq!(r.scan(text), None);
    assert!(r.findings().is_empty());
    assert!(!off.restores());
}

#[test]
fn redact_mode_runs_only_the_chosen_detectors() {
    let g = Guardrail::compile(record(PiiPolicy {
        mode: PiiMode::Redact,
        detectors: vec![PiiDetector::Card],
        ..PiiPolicy::default()
    }))
    .expect("compiles");
    let mut r = g.redactor();
    assert_eq!(
        r.scan("jane@example.com pays with 5500-0000-0000-0004")
            .as_deref(),
        Some("jane@example.com pays with [CARD_1]")
    );
}

fn blocking(terms: &[&str]) -> Guardrail {
    let mut r = record(PiiPolicy::default());
    r.blocked_terms = terms.iter().map(|t| (*t).to_owned()).collect();
    Guardrail::compile(r).expect("compiles")
}

#[test]
fn blocked_terms_are_case_insensitive_whole_words() {
    let g = blocking(&["Project Falcon", " secret "]);
    for text in [
        "project falcon is late",
        "About PROJECT FALCON.",
        "(project\n  falcon)",
        "the Secret sauce",
        "secret",
    ] {
        assert!(g.has_blocked_term(text), "{text:?}");
    }
    for text in [
        "falconry",
        "project falconry",
        "subproject falcon",
        "secretary",
        "topsecret",
        "",
    ] {
        assert!(!g.has_blocked_term(text), "{text:?}");
    }

    let g = blocking(&["c++", ".net", "élan", "сокол"]);
    for text in [
        "I write C++ daily",
        "c++.",
        "(c++)",
        "built on .NET",
        "with Élan",
        "Сокол летит",
    ] {
        assert!(g.has_blocked_term(text), "{text:?}");
    }
    for text in [
        "abc++",
        "c+",
        "the net",
        "élanvital",
        "leélan",
        "соколы",
        "_сокол",
    ] {
        assert!(!g.has_blocked_term(text), "{text:?}");
    }
    // Regex syntax in a term is literal.
    let g = blocking(&["a.b", "(x)"]);
    assert!(g.has_blocked_term("use a.b now"));
    assert!(!g.has_blocked_term("use axb now"));
    assert!(g.has_blocked_term("f(x)"));
    assert!(!blocking(&["x"]).has_blocked_term("y"));
    assert!(
        !Guardrail::compile(record(PiiPolicy::default()))
            .expect("compiles")
            .has_blocked_term("anything")
    );
}

/// A vault holding `[EMAIL_1]`, `[EMAIL_2]`, `[PHONE_1]`, `[EMP_ID_1]`.
fn vault() -> Arc<Vault> {
    let mut v = Vault::default();
    assert_eq!(v.placeholder("EMAIL", "jane@example.com"), "[EMAIL_1]");
    assert_eq!(v.placeholder("EMAIL", "john@example.com"), "[EMAIL_2]");
    assert_eq!(v.placeholder("PHONE", "555-123-4567"), "[PHONE_1]");
    assert_eq!(v.placeholder("EMAIL", "jane@example.com"), "[EMAIL_1]");
    assert_eq!(v.placeholder("EMP_ID", "EMP12345"), "[EMP_ID_1]");
    assert_eq!(v.len(), 4);
    Arc::new(v)
}

#[test]
fn vault_numbers_per_label() {
    let mut v = Vault::default();
    for i in 1..=12 {
        assert_eq!(
            v.placeholder("EMAIL", &format!("u{i}@example.com")),
            format!("[EMAIL_{i}]")
        );
    }
    assert_eq!(v.placeholder("IP", "10.0.0.1"), "[IP_1]");
    assert_eq!(v.placeholder("EMAIL", "u3@example.com"), "[EMAIL_3]");
    assert_eq!(
        v.restore("[EMAIL_1] [EMAIL_12] [EMAIL_1] [IP_1]")
            .as_deref(),
        Some("u1@example.com u12@example.com u1@example.com 10.0.0.1")
    );
}

#[test]
fn vault_restore() {
    let v = vault();
    assert_eq!(v.restore("no brackets at all"), None);
    assert_eq!(v.restore("[1] and [EMAIL_9] and [EMAIL_1"), None);
    assert_eq!(v.restore("[EMAIL_1]").as_deref(), Some("jane@example.com"));
    assert_eq!(
        v.restore("[[EMAIL_1]][PHONE_1][EMAIL_2]!").as_deref(),
        Some("[jane@example.com]555-123-4567john@example.com!")
    );
    assert_eq!(
        v.restore("é [EMP_ID_1] ü [email_1]").as_deref(),
        Some("é EMP12345 ü [email_1]")
    );
    assert_eq!(Vault::default().restore("[EMAIL_1]"), None);
}

/// Everything `deltas` produce, finish included.
fn stream(vault: &Arc<Vault>, deltas: &[&str]) -> String {
    let mut s = StreamRestorer::new(Arc::clone(vault));
    let mut out: String = deltas.iter().map(|d| s.push(d)).collect();
    out.push_str(&s.finish());
    out
}

#[test]
fn stream_restores_a_placeholder_split_anywhere() {
    let v = vault();
    let text = "Hi [EMAIL_1], call [PHONE_1].";
    let expected = "Hi jane@example.com, call 555-123-4567.";
    for i in 0..=text.len() {
        assert_eq!(
            stream(&v, &[&text[..i], &text[i..]]),
            expected,
            "split at {i}"
        );
        for j in i..=text.len() {
            assert_eq!(
                stream(&v, &[&text[..i], &text[i..j], &text[j..]]),
                expected,
                "split at {i} and {j}"
            );
        }
    }
    // One character at a time.
    let chars: Vec<String> = text.chars().map(String::from).collect();
    let deltas: Vec<&str> = chars.iter().map(String::as_str).collect();
    assert_eq!(stream(&v, &deltas), expected);
}

#[test]
fn stream_holds_back_only_what_may_be_a_placeholder() {
    let v = vault();
    let mut s = StreamRestorer::new(Arc::clone(&v));
    assert_eq!(s.push("no brackets"), "no brackets");
    assert_eq!(s.push("...see [EMA"), "...see ");
    assert_eq!(s.push("IL_1"), "");
    assert_eq!(s.push("]. Next"), "jane@example.com. Next");
    // Released as soon as it cannot be the beginning of a placeholder.
    assert_eq!(s.push(" [n"), " [n");
    assert_eq!(s.push("ot a placeholder"), "ot a placeholder");
    assert_eq!(s.push(" [1]"), " [1]");
    assert_eq!(s.push(" [EMAIL_"), " ");
    assert_eq!(s.push("9"), "[EMAIL_9");
    assert_eq!(s.push("] and [EMAIL_2][PHONE_"), "] and john@example.com");
    assert_eq!(s.push("1"), "");
    assert_eq!(s.push("]"), "555-123-4567");
    // A `[` at the very end is held, and flushed by finish.
    assert_eq!(s.push("end ["), "end ");
    assert_eq!(s.finish(), "[");
    assert_eq!(s.finish(), "");
    // finish flushes an unfinished placeholder as it is.
    let mut s = StreamRestorer::new(Arc::clone(&v));
    assert_eq!(s.push("[EMP_ID"), "");
    assert_eq!(s.finish(), "[EMP_ID");
    // Several placeholders in one delta.
    assert_eq!(
        stream(&v, &["[EMAIL_1][EMAIL_2] [PHONE_1]"]),
        "jane@example.comjohn@example.com 555-123-4567"
    );
    // An empty vault holds nothing back.
    let mut s = StreamRestorer::new(Arc::new(Vault::default()));
    assert_eq!(s.push("see [EMAIL_1"), "see [EMAIL_1");
}

#[test]
fn stream_holds_at_most_a_placeholder() {
    let v = vault();
    let mut s = StreamRestorer::new(Arc::clone(&v));
    let mut held = 0;
    for c in "[[EMAIL_1[EMAIL_[EMP_ID_1[EMP_ID_".chars() {
        let out = s.push(&c.to_string());
        held = held + c.len_utf8() - out.len();
        assert!(held < "[EMP_ID_1]".len(), "held {held}");
    }
}

/// A tiny deterministic generator, so a failure reproduces.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[test]
fn stream_equals_restore_for_random_splits() {
    let v = vault();
    let pieces = [
        "[EMAIL_1]",
        "[EMAIL_2]",
        "[PHONE_1]",
        "[EMP_ID_1]",
        "[EMAIL_",
        "[EMAIL_3]",
        "[",
        "]",
        "[[",
        "[1]",
        " ",
        "text",
        "é",
        "日本",
        "[EMP",
        "_ID_1",
        "\n",
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..2000 {
        let text: String = (0..rng.below(12) + 1)
            .map(|_| pieces[rng.below(pieces.len())])
            .collect();
        let expected = v.restore(&text).unwrap_or_else(|| text.clone());
        let boundaries: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .chain([text.len()])
            .collect();
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| boundaries[rng.below(boundaries.len())])
            .collect();
        cuts.sort_unstable();
        let mut deltas = Vec::new();
        let mut at = 0;
        for cut in cuts {
            deltas.push(&text[at..cut]);
            at = cut;
        }
        deltas.push(&text[at..]);
        assert_eq!(stream(&v, &deltas), expected, "{deltas:?}");
    }
}

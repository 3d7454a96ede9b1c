//! The PII detectors. STUB: to be implemented (see the module docs of `guardrails`).

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

/// Every finding of `detectors` and `custom` (rule, label, pattern) in `text`, in order and
/// without overlaps.
pub fn find_pii(
    text: &str,
    detectors: &[PiiDetector],
    custom: &[(String, String, regex::Regex)],
) -> Vec<Finding> {
    let _ = (text, detectors, custom);
    Vec::new()
}

/// Whether `digits` (ASCII digits only) pass the Luhn check.
pub fn luhn_valid(digits: &str) -> bool {
    let _ = digits;
    false
}

/// Whether `candidate` (spaces allowed) is an IBAN with a valid mod-97 checksum.
pub fn iban_valid(candidate: &str) -> bool {
    let _ = candidate;
    false
}

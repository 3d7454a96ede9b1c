//! Field checks shared by the handlers. Every error names the field, so clients can point at it.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

/// Longest accepted name (teams, keys, providers, models, organizations).
pub(crate) const MAX_NAME_LEN: usize = 200;

/// A trimmed, non-empty name of at most [`MAX_NAME_LEN`] characters without control characters.
pub(crate) fn name(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if v.chars().count() > MAX_NAME_LEN {
        return Err(ApiError::invalid(
            field,
            format_args!("must be at most {MAX_NAME_LEN} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(v.to_owned())
}

/// An optional name: `None` stays `None`, a present value must be valid.
pub(crate) fn optional_name(field: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    value.map(|v| name(field, v)).transpose()
}

/// A plausible email address, lowercased. Deliberately loose (one `@`, a dot in the domain, no
/// spaces): the only real check is whether mail arrives, and we send none.
pub(crate) fn email(value: &str) -> Result<String, ApiError> {
    let v = value.trim().to_lowercase();
    let bad = || ApiError::invalid("email", "must be a valid email address");
    if v.len() > 254 || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = v.split_once('@').ok_or_else(bad)?;
    if local.is_empty()
        || domain.contains('@')
        || !domain.contains('.')
        || domain.starts_with('.')
        || domain.ends_with('.')
    {
        return Err(bad());
    }
    Ok(v)
}

/// An RFC 3339 timestamp such as `2026-12-31T23:59:59Z`, converted to UTC.
pub(crate) fn timestamp(field: &str, value: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 timestamp such as 2026-12-31T23:59:59Z",
            )
        })
}

/// An `http://` or `https://` URL with a host, without a trailing slash.
pub(crate) fn http_url(field: &str, value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let bad = || {
        ApiError::invalid(
            field,
            "must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1",
        )
    };
    let uri: axum::http::Uri = v.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let host_ok = uri.host().is_some_and(|h| !h.is_empty());
    if !scheme_ok || !host_ok || uri.query().is_some() {
        return Err(bad());
    }
    Ok(v.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email(" Alice@Example.COM ").ok().as_deref(),
            Some("alice@example.com")
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@@example.com",
            "a@example.com.",
        ] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            http_url("base_url", "http://127.0.0.1:8000/v1/")
                .ok()
                .as_deref(),
            Some("http://127.0.0.1:8000/v1")
        );
        assert!(http_url("base_url", "https://api.example.com/v1").is_ok());
        for bad in ["", "ftp://x", "127.0.0.1:8000", "http://", "not a url"] {
            assert!(http_url("base_url", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_and_timestamps() {
        assert_eq!(name("name", "  prod  ").ok().as_deref(), Some("prod"));
        assert!(name("name", "   ").is_err());
        assert!(name("name", &"x".repeat(201)).is_err());
        assert!(timestamp("expires_at", "2030-01-01T00:00:00+02:00").is_ok());
        let err = timestamp("expires_at", "tomorrow")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("expires_at:"), "{err}");
    }
}

//! Field checks shared by the handlers. Every error names the field, so clients can point at it.
//!
//! Every free-form string the control API accepts has an explicit cap, checked before the value
//! is used, stored or logged:
//!
//! | what | cap |
//! | ---- | --- |
//! | names (organizations, teams, keys, providers, model deployments, routes), model names, upstream model ids, deployment regions | [`MAX_NAME_LEN`] characters |
//! | region policies (`allowed_regions`) | [`MAX_REGIONS`] entries of at most [`MAX_REGION_LEN`] characters |
//! | catalog ids | `catalog::MAX_ID_LEN` characters |
//! | URLs (`base_url`, catalog `source`) | [`MAX_URL_LEN`] bytes |
//! | emails | 254 bytes |
//! | timestamps (bodies and query strings) | [`MAX_TIMESTAMP_LEN`] bytes |
//! | provider secrets | 4096 bytes |
//! | the JSON body | `http::MAX_BODY_BYTES` (413 above) |
//! | path and query string | `http::MAX_URI_BYTES` (414 above) |
//!
//! Messages never repeat a refused value beyond a short [`preview`].

use std::net::IpAddr;
use std::time::Duration;

use shared::egress::EgressPolicy;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::{Host, Url};

use crate::error::ApiError;

/// Longest accepted name (teams, keys, providers, models, organizations), model name or
/// upstream model id, in characters.
pub(crate) const MAX_NAME_LEN: usize = 200;
/// Longest accepted URL, in bytes (what browsers and most proxies accept).
pub(crate) const MAX_URL_LEN: usize = 2048;
/// Longest accepted RFC 3339 timestamp text (real ones are under 40 bytes).
pub(crate) const MAX_TIMESTAMP_LEN: usize = 64;
/// Most entries in one region policy (`allowed_regions`).
pub(crate) const MAX_REGIONS: usize = 50;
/// Longest region policy entry (real region names are under 30 characters).
pub(crate) const MAX_REGION_LEN: usize = 64;
/// How long the write-time check of a provider's address may wait for DNS.
pub(crate) const DNS_TIMEOUT: Duration = Duration::from_secs(2);

/// At most `max` characters of `value`, with `…` when cut: what an error message may repeat of
/// a client's input.
pub(crate) fn preview(value: &str, max: usize) -> String {
    match value.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value.to_owned(),
    }
}

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

/// A region policy (`allowed_regions` of an organization, a team or a route): 1 to
/// [`MAX_REGIONS`] entries, each a region (`eu-west-1`) or a region prefix (`eu`, which allows
/// `eu-west-1` but not `europe-1`, see `shared::config::region_allows`) of 1 to
/// [`MAX_REGION_LEN`] ASCII letters, digits, `-`, `_` and `.`, neither starting nor ending with
/// `-`. Entries are trimmed; duplicates (matching ignores case) are dropped, keeping the first.
/// An empty list is refused: it would allow no region at all, and clearing a policy is `null`.
pub(crate) fn region_list(field: &str, values: &[String]) -> Result<Vec<String>, ApiError> {
    if values.is_empty() {
        return Err(ApiError::invalid(
            field,
            "must list at least one region; send null to remove the policy",
        ));
    }
    if values.len() > MAX_REGIONS {
        return Err(ApiError::invalid(
            field,
            format_args!("must list at most {MAX_REGIONS} regions"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let v = value.trim();
        let at = || format!("{field}[{i}]");
        if v.is_empty() {
            return Err(ApiError::invalid(&at(), "must not be empty"));
        }
        if v.chars().count() > MAX_REGION_LEN {
            return Err(ApiError::invalid(
                &at(),
                format_args!("must be at most {MAX_REGION_LEN} characters"),
            ));
        }
        if !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            || v.starts_with('-')
            || v.ends_with('-')
        {
            return Err(ApiError::invalid(
                &at(),
                "must be a region or region prefix such as eu, eu-west-1 or us-central1 (letters, digits, -, _ and .)",
            ));
        }
        if !out.iter().any(|o| o.eq_ignore_ascii_case(v)) {
            out.push(v.to_owned());
        }
    }
    Ok(out)
}

/// For `PATCH` bodies: a field that may be absent (`None`: leave it as it is), `null`
/// (`Some(None)`: remove the value) or a value (`Some(Some(v))`). Use with
/// `#[serde(default, deserialize_with = "validate::nullable")]`.
pub(crate) fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(deserializer).map(Some)
}

/// For `PATCH` bodies: a field that may be absent (`None`: leave it as it is) but not `null`
/// (it has no "no value"), so `null` is a 400 naming the field instead of a silent no-op. Use
/// with `#[serde(default, deserialize_with = "validate::present")]`.
pub(crate) fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
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
    if value.len() > MAX_TIMESTAMP_LEN {
        return Err(ApiError::invalid(
            field,
            format_args!(
                "must be at most {MAX_TIMESTAMP_LEN} bytes (an RFC 3339 timestamp such as 2026-12-31T23:59:59Z)"
            ),
        ));
    }
    OffsetDateTime::parse(value.trim(), &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| {
            ApiError::invalid(
                field,
                "must be an RFC 3339 timestamp such as 2026-12-31T23:59:59Z",
            )
        })
}

/// An `http://` or `https://` URL with a host and no user info, query or fragment, parsed the
/// way the data plane's HTTP client parses it (WHATWG URL rules, the `url` crate): so
/// `http://2130706433/` and `http://0177.0.0.1/` are the IPv4 address 127.0.0.1 here too, and
/// the write-time address check judges the same host the data plane would connect to.
///
/// Credentials in the URL (`https://user:pass@host`) are refused: they would be stored and
/// shown in plain text, while provider secrets belong in the sealed fields (`api_key`).
pub(crate) fn http_url(field: &str, value: &str) -> Result<Url, ApiError> {
    let v = value.trim();
    if v.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(
            field,
            format_args!("must be at most {MAX_URL_LEN} bytes"),
        ));
    }
    let bad = || {
        ApiError::invalid(
            field,
            "must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1",
        )
    };
    if v.chars().any(char::is_control) {
        return Err(bad());
    }
    let url = Url::parse(v).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ApiError::invalid(
            field,
            "must not contain credentials (user:password@); put the provider's key in api_key, which is stored sealed",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ApiError::invalid(
            field,
            "must not contain a query string or fragment",
        ));
    }
    Ok(url)
}

/// The form of a checked URL that is stored and published: the parser's normalized
/// serialization (lowercase scheme and host, IP addresses in dotted form, default port
/// dropped) without a trailing slash.
pub(crate) fn stored_url(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// The write-time egress check of an upstream URL: refuses a URL whose host is, or resolves
/// only to, addresses `policy` refuses (loopback, private, link-local, cloud metadata, …; see
/// `shared::egress`).
///
/// A domain is resolved with the system resolver, bounded by [`DNS_TIMEOUT`]. When the name
/// does not resolve (or not in time) the URL is accepted: DNS may legitimately be unavailable
/// from the control plane, and this check is a courtesy that turns an unusable provider into an
/// early, clear error. The guarantee is the data plane's check at connection time, after its own
/// resolution, which also defeats DNS rebinding. A name that resolves to some allowed address
/// is accepted; the data plane connects only to the allowed ones.
pub(crate) async fn upstream_address(
    field: &str,
    url: &Url,
    policy: &EgressPolicy,
) -> Result<(), ApiError> {
    let refused = |host: &str, ranges: &[&str], resolved: bool| {
        let metadata_only = ranges.iter().all(|r| *r == "cloud metadata");
        let kinds = join_words(ranges);
        let what = if resolved {
            format!(
                "host {} resolves only to {kinds} addresses",
                preview(host, 64)
            )
        } else {
            format!(
                "{} is {} {kinds} address",
                preview(host, 64),
                article(&kinds)
            )
        };
        let remedy = if metadata_only {
            "an operator can allow it only by listing that exact address in SWITCHYARD_UPSTREAM_ALLOW_CIDRS"
        } else {
            "an operator can allow such addresses with SWITCHYARD_UPSTREAM_ALLOW_CIDRS"
        };
        ApiError::invalid(
            field,
            format_args!("{what}, which this gateway's egress policy refuses ({remedy})"),
        )
    };
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(Host::Domain(domain)) => {
            let port = url.port_or_known_default().unwrap_or(443);
            let lookup = tokio::time::timeout(
                DNS_TIMEOUT,
                tokio::net::lookup_host((domain.to_owned(), port)),
            )
            .await;
            let addrs: Vec<IpAddr> = match lookup {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(e)) => {
                    tracing::debug!(host = %preview(domain, 64), error = %e, "base_url does not resolve; accepted, checked again at connection time");
                    return Ok(());
                }
                Err(_) => {
                    tracing::debug!(host = %preview(domain, 64), "base_url resolution timed out; accepted, checked again at connection time");
                    return Ok(());
                }
            };
            let mut ranges: Vec<&'static str> = Vec::new();
            for addr in &addrs {
                match policy.check(*addr) {
                    Ok(()) => return Ok(()),
                    Err(r) => {
                        if !ranges.contains(&r.range) {
                            ranges.push(r.range);
                        }
                    }
                }
            }
            if ranges.is_empty() {
                return Ok(());
            }
            return Err(refused(domain, &ranges, true));
        }
        None => return Err(ApiError::invalid(field, "must name a host")),
    };
    policy
        .check(ip)
        .map_err(|r| refused(&ip.to_string(), &[r.range], false))
}

/// "a", "a and b", "a, b and c".
fn join_words(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
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

    fn stored(v: &str) -> Option<String> {
        http_url("base_url", v).ok().map(|u| stored_url(&u))
    }

    #[test]
    fn urls() {
        assert_eq!(
            stored("http://127.0.0.1:8000/v1/").as_deref(),
            Some("http://127.0.0.1:8000/v1")
        );
        assert_eq!(
            stored("HTTPS://API.Example.com:443/v1").as_deref(),
            Some("https://api.example.com/v1")
        );
        // WHATWG host parsing: decimal and octal IPv4 forms are IPv4 addresses.
        assert_eq!(
            stored("http://2130706433/v1").as_deref(),
            Some("http://127.0.0.1/v1")
        );
        assert_eq!(
            stored("http://0177.0.0.1/").as_deref(),
            Some("http://127.0.0.1")
        );
        assert_eq!(
            stored("http://[::ffff:127.0.0.1]:8/").as_deref(),
            Some("http://[::ffff:7f00:1]:8")
        );
        for bad in [
            "",
            "ftp://x",
            "127.0.0.1:8000",
            "http://",
            "not a url",
            "http://x/v1?a=b",
            "http://x/v1#frag",
            "file:///etc/passwd",
            "http://exa\u{7}mple.com",
        ] {
            assert!(http_url("base_url", bad).is_err(), "{bad}");
        }
        for creds in [
            "http://user:pass@x.example/v1",
            "http://user@x.example",
            "http://:pw@x.example",
        ] {
            let msg = http_url("base_url", creds)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                msg.starts_with("base_url: must not contain credentials"),
                "{creds}: {msg}"
            );
            assert!(!msg.contains(creds) && !msg.contains("x.example"), "{msg}");
        }
        let long = format!("https://x.example/{}", "a".repeat(MAX_URL_LEN));
        let msg = http_url("base_url", &long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            msg,
            format!("base_url: must be at most {MAX_URL_LEN} bytes")
        );
    }

    #[tokio::test]
    async fn egress_check_at_write_time() {
        let strict = EgressPolicy::default();
        let local = EgressPolicy::parse(shared::egress::ZERO_SETUP_ALLOW).unwrap_or_default();
        let check = |u: &str, p: &EgressPolicy| {
            let url = http_url("base_url", u).ok();
            let p = p.clone();
            async move {
                match url {
                    Some(url) => upstream_address("base_url", &url, &p)
                        .await
                        .map_err(|e| e.to_string()),
                    None => Err("unparsable".to_owned()),
                }
            }
        };
        for (u, want) in [
            (
                "http://169.254.169.254/latest",
                "169.254.169.254 is a cloud metadata address",
            ),
            (
                "http://127.0.0.1:8080/v1",
                "127.0.0.1 is a loopback address",
            ),
            ("http://[::1]:6379", "::1 is a loopback address"),
            ("http://10.0.0.1", "10.0.0.1 is a private address"),
            ("http://0.0.0.0:8080", "0.0.0.0 is an unspecified address"),
            ("http://2130706433/", "127.0.0.1 is a loopback address"),
            ("http://0177.0.0.1/", "127.0.0.1 is a loopback address"),
            (
                "http://[::ffff:127.0.0.1]/",
                "::ffff:127.0.0.1 is a loopback address",
            ),
            (
                "http://localhost:1/",
                "host localhost resolves only to loopback addresses",
            ),
        ] {
            let got = check(u, &strict).await.err().unwrap_or_default();
            assert!(got.starts_with(&format!("base_url: {want}")), "{u}: {got}");
            assert!(got.contains("SWITCHYARD_UPSTREAM_ALLOW_CIDRS"), "{got}");
        }
        assert!(check("http://127.0.0.1:8080/v1", &local).await.is_ok());
        assert!(check("http://localhost:1/", &local).await.is_ok());
        assert!(check("http://169.254.169.254/", &local).await.is_err());
        assert!(check("http://8.8.8.8/v1", &strict).await.is_ok());
        // A name that does not resolve is accepted (checked again at connection time).
        assert!(
            check("http://no-such-host.invalid/v1", &strict)
                .await
                .is_ok()
        );
    }

    #[test]
    fn region_policies() {
        let list = |v: &[&str]| {
            region_list(
                "allowed_regions",
                &v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
            .map_err(|e| e.to_string())
        };
        assert_eq!(
            list(&[" eu ", "eu-west-1", "EU", "us-central1"]),
            Ok(vec![
                "eu".to_owned(),
                "eu-west-1".to_owned(),
                "us-central1".to_owned()
            ])
        );
        let err = list(&[]).err().unwrap_or_default();
        assert!(
            err.starts_with("allowed_regions: must list at least one"),
            "{err}"
        );
        for (bad, at) in [
            (vec!["eu", ""], "allowed_regions[1]:"),
            (vec!["eu west"], "allowed_regions[0]:"),
            (vec!["-eu"], "allowed_regions[0]:"),
            (vec!["eu-"], "allowed_regions[0]:"),
            (vec!["eu", "us", "ü"], "allowed_regions[2]:"),
        ] {
            let err = list(&bad).err().unwrap_or_default();
            assert!(err.starts_with(at), "{bad:?}: {err}");
        }
        let long = "a".repeat(MAX_REGION_LEN + 1);
        assert!(list(&[&long]).is_err());
        let many: Vec<String> = (0..=MAX_REGIONS).map(|i| format!("r{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(list(&many).is_err());
    }

    #[test]
    fn names_and_timestamps() {
        assert_eq!(name("name", "  prod  ").ok().as_deref(), Some("prod"));
        assert!(name("name", "   ").is_err());
        assert!(name("name", &"x".repeat(201)).is_err());
        assert_eq!(preview("abcdef", 3), "abc…");
        assert_eq!(preview("äbc", 3), "äbc");
        let long = "9".repeat(10_000);
        let err = timestamp("since", &long)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("since:") && err.len() < 200, "{err}");
        assert!(timestamp("expires_at", "2030-01-01T00:00:00+02:00").is_ok());
        let err = timestamp("expires_at", "tomorrow")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.starts_with("expires_at:"), "{err}");
    }
}

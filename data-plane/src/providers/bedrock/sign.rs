//! AWS Signature Version 4 for Bedrock runtime requests, done by the maintained `aws-sigv4`
//! crate (the one the AWS SDK for Rust uses), and the URI encoding of the `{modelId}` label.
//!
//! Spec: <https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html> (create a
//! signed request: canonical request, string to sign, signing key, `Authorization` header).
//!
//! What we sign: the method, the exact URL we send (path already percent-encoded, see
//! [`encode_label`]), the `host` (taken from that URL, port included when not the default),
//! `x-amz-date`, and the SHA-256 of the exact body bytes. Service `bedrock`, the provider's
//! region. The signature goes in the `Authorization` header; `x-amz-content-sha256` is not
//! needed by Bedrock and not sent.
//!
//! Canonical URI: Bedrock, like every AWS service but S3, canonicalizes the path it *received*
//! by URI-encoding each segment again. A model id such as `anthropic.claude-3-5-sonnet-20240620-v1:0`
//! is sent as `…-v1%3A0` and appears as `…-v1%253A0` in the canonical request; `aws-sigv4`'s
//! default [`PercentEncodingMode::Double`](aws_sigv4::http_request::PercentEncodingMode) does
//! exactly that, so we keep the default settings.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::header::{HeaderName, HeaderValue};

/// The SigV4 service name of the Bedrock runtime endpoints (the credential scope's service).
pub(crate) const SERVICE: &str = "bedrock";

/// AWS credentials for one provider. `Debug` never shows the secret.
pub(crate) struct AwsCredentials<'a> {
    pub(crate) access_key_id: &'a str,
    pub(crate) secret_access_key: &'a str,
    pub(crate) region: &'a str,
}

impl std::fmt::Debug for AwsCredentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be signed (a malformed URL or header value). Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the Bedrock request: {0}")]
pub(crate) struct SignError(String);

/// Signs `POST url` with `body` at time `now`; returns the headers to add (`x-amz-date`,
/// `authorization`). The `authorization` value is marked sensitive so it never shows in
/// `Debug` output of the request.
pub(crate) fn sign_post(
    credentials: &AwsCredentials<'_>,
    url: &str,
    body: &[u8],
    now: SystemTime,
) -> Result<Vec<(HeaderName, HeaderValue)>, SignError> {
    let identity: Identity = Credentials::new(
        credentials.access_key_id,
        credentials.secret_access_key,
        None,
        None,
        "switchyard-provider",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(credentials.region)
        .name(SERVICE)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let request = SignableRequest::new("POST", url, std::iter::empty(), SignableBody::Bytes(body))
        .map_err(|e| SignError(e.to_string()))?;
    let (instructions, _signature) = sign(request, &params)
        .map_err(|e| SignError(e.to_string()))?
        .into_parts();
    let (headers, _params) = instructions.into_parts();
    headers
        .into_iter()
        .map(|h| {
            let name = HeaderName::from_bytes(h.name().as_bytes())
                .map_err(|e| SignError(e.to_string()))?;
            let mut value = HeaderValue::from_str(h.value()).map_err(|_| {
                // The value is not echoed: it may be the signature.
                SignError(format!("invalid value for header {}", h.name()))
            })?;
            value.set_sensitive(h.sensitive() || name == reqwest::header::AUTHORIZATION);
            Ok((name, value))
        })
        .collect()
}

/// Percent-encodes one path segment (a `{modelId}` label) the way the AWS SDKs do for URI
/// labels: every byte except the unreserved characters `A–Z a–z 0–9 - . _ ~` becomes `%XX`.
/// So `:` in model ids and ARNs becomes `%3A` and `/` in inference-profile ARNs `%2F`, keeping
/// the id one segment.
pub(crate) fn encode_label(label: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(label.len() * 3);
    for &b in label.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn labels_are_encoded_as_one_segment() {
        assert_eq!(
            encode_label("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            "anthropic.claude-3-5-sonnet-20240620-v1%3A0"
        );
        assert_eq!(
            encode_label(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.meta.llama3-2-1b-instruct-v1:0"
            ),
            "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.meta.llama3-2-1b-instruct-v1%3A0"
        );
        assert_eq!(encode_label("a b~é"), "a%20b~%C3%A9");
    }

    /// The signature depends on the double-encoded canonical path, the body and the time, and
    /// the secret never appears in any header.
    #[test]
    fn signs_with_the_documented_headers() {
        let creds = AwsCredentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
        };
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        let url = "https://bedrock-runtime.us-east-1.amazonaws.com/model/m%3A0/converse";
        let headers = sign_post(&creds, url, b"{}", at).expect("signs");
        let get = |n: &str| {
            headers
                .iter()
                .find(|(name, _)| name.as_str() == n)
                .map(|(_, v)| v.to_str().unwrap().to_owned())
                .expect(n)
        };
        assert_eq!(get("x-amz-date"), "20150830T123600Z");
        let auth = get("authorization");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature="
            ),
            "{auth}"
        );
        assert!(!auth.contains(creds.secret_access_key));
        let other_body = sign_post(&creds, url, b"{ }", at).expect("signs");
        assert_ne!(other_body, headers);
        let other_path = sign_post(
            &creds,
            "https://bedrock-runtime.us-east-1.amazonaws.com/model/m:0/converse",
            b"{}",
            at,
        )
        .expect("signs");
        assert_ne!(other_path, headers);
        assert!(
            headers
                .iter()
                .any(|(n, v)| n == reqwest::header::AUTHORIZATION && v.is_sensitive())
        );
    }
}

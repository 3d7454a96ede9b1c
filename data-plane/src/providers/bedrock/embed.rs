//! Embeddings through InvokeModel
//! (<https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html>),
//! answered in OpenAI's list format.
//!
//! Two model families, told apart by the upstream model id:
//! - Amazon Titan Text Embeddings (`amazon.titan-embed-text-v2:0`, `…-v1`,
//!   `amazon.titan-embed-g1-text-02`): one text per request, `{"inputText", "dimensions"?}` →
//!   `{"embedding": [...], "inputTextTokenCount"}`
//!   (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-titan-embed-text.html>).
//!   A batch is sent as one request per input, at most [`TITAN_CONCURRENCY`] at a time, and the
//!   answer keeps the input order. `dimensions` only exists on v2 (256, 512 or 1024).
//! - Cohere Embed (`cohere.embed-english-v3`, `cohere.embed-multilingual-v3`,
//!   `cohere.embed-v4:0`): up to [`COHERE_BATCH`] texts per request,
//!   `{"texts", "input_type", "embedding_types": ["float"], "output_dimension"? (v4)}` →
//!   `{"embeddings": [[...]]}` or `{"embeddings": {"float": [[...]]}}`
//!   (<https://docs.aws.amazon.com/bedrock/latest/userguide/model-parameters-embed.html>).
//!   Cohere requires `input_type`; OpenAI's API has none, so the request's own `input_type`
//!   field is used when the client sends one (`search_document`, `search_query`,
//!   `classification`, `clustering`), else `search_document`. Token counts come from the
//!   `X-Amzn-Bedrock-Input-Token-Count` response header, which InvokeModel sets for every model.
//!
//! Input must be text (a string or an array of strings): token-id inputs are refused with a 400.
//! `encoding_format` `float` (default) or `base64` (little-endian f32, as OpenAI encodes it —
//! the official OpenAI SDKs ask for base64 by default).

use base64::Engine;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::Upstream;
use crate::error::{GatewayError, invalid};
use crate::providers::{EmbedCall, Embeddings, Usage};
use crate::wire::EmbeddingInput;

/// Titan requests in flight for one batch: enough to hide latency, few enough not to trip the
/// account's requests-per-minute quota on a large batch.
const TITAN_CONCURRENCY: usize = 4;
/// Cohere Embed's documented maximum number of texts per request.
const COHERE_BATCH: usize = 96;
/// Largest embeddings answer we buffer (a 96-text, 1536-dimension batch is ~3 MB of JSON).
const MAX_EMBEDDINGS_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Titan { v2: bool },
    Cohere { v4: bool },
}

impl Family {
    fn of(model: &str) -> Result<Self, GatewayError> {
        let m = model.to_ascii_lowercase();
        if m.contains("titan-embed-text") || m.contains("titan-embed-g1-text") {
            Ok(Family::Titan {
                v2: m.contains("titan-embed-text-v2"),
            })
        } else if m.contains("cohere.embed") {
            Ok(Family::Cohere {
                v4: m.contains("embed-v4"),
            })
        } else {
            Err(invalid(
                "model",
                "This model's provider (bedrock) serves embeddings only with Amazon Titan Text Embeddings (amazon.titan-embed-text-*) and Cohere Embed (cohere.embed-*) models.",
            ))
        }
    }
}

fn protocol(what: &str) -> GatewayError {
    GatewayError::UpstreamProtocol(format!("InvokeModel embeddings answer: {what}"))
}

/// One model answer: vectors in input order, and the input tokens if reported.
struct Batch {
    vectors: Vec<Vec<Value>>,
    tokens: Option<u64>,
}

pub(super) async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    let request = call.request;
    let texts: Vec<&str> = match &request.input {
        EmbeddingInput::Text(t) => vec![t.as_str()],
        EmbeddingInput::Texts(ts) => ts.iter().map(String::as_str).collect(),
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => {
            return Err(invalid(
                "input",
                "This model's provider (bedrock) embeds text only; send 'input' as a string or an array of strings.",
            ));
        }
    };
    if texts.is_empty() || texts.iter().any(|t| t.is_empty()) {
        return Err(invalid(
            "input",
            "'input' must be a non-empty string or a non-empty array of non-empty strings.",
        ));
    }
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(invalid(
                "encoding_format",
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
            ));
        }
    };
    let family = Family::of(call.upstream_model)?;
    let upstream = Upstream::new(
        call.provider,
        call.http,
        call.hops,
        call.settings,
        call.deadline,
    )?;

    let batches: Vec<Batch> = match family {
        Family::Titan { v2 } => {
            if request.dimensions.is_some() && !v2 {
                return Err(invalid(
                    "dimensions",
                    "This model does not support 'dimensions' (Titan Text Embeddings V2 does: 256, 512 or 1024).",
                ));
            }
            // Collected first: a stream holding the mapping closure across the await makes
            // the future's `Send` bound higher-ranked, which rustc cannot prove (the spawning
            // handler then fails to compile with "Send is not general enough").
            let requests: Vec<_> = texts
                .iter()
                .map(|text| {
                    let mut body = json!({ "inputText": text });
                    if let Some(d) = request.dimensions {
                        body["dimensions"] = json!(d);
                    }
                    invoke(&upstream, call.upstream_model, body, family)
                })
                .collect();
            futures::stream::iter(requests)
                .buffered(TITAN_CONCURRENCY)
                .try_collect()
                .await?
        }
        Family::Cohere { v4 } => {
            if request.dimensions.is_some() && !v4 {
                return Err(invalid(
                    "dimensions",
                    "This model does not support 'dimensions' (Cohere Embed v4 does).",
                ));
            }
            let input_type = request
                .extra
                .get("input_type")
                .and_then(Value::as_str)
                .unwrap_or("search_document");
            let mut out = Vec::new();
            for chunk in texts.chunks(COHERE_BATCH) {
                let mut body = json!({
                    "texts": chunk,
                    "input_type": input_type,
                    "embedding_types": ["float"],
                });
                if let Some(d) = request.dimensions {
                    body["output_dimension"] = json!(d);
                }
                let batch = invoke(&upstream, call.upstream_model, body, family).await?;
                if batch.vectors.len() != chunk.len() {
                    return Err(protocol(
                        "Cohere returned a different number of embeddings than texts",
                    ));
                }
                out.push(batch);
            }
            out
        }
    };

    let mut data = Vec::with_capacity(texts.len());
    let mut tokens: Option<u64> = None;
    for batch in batches {
        if let Some(t) = batch.tokens {
            tokens = Some(tokens.unwrap_or(0) + t);
        }
        for vector in batch.vectors {
            let embedding = if base64 {
                Value::String(encode_base64(&vector)?)
            } else {
                Value::Array(vector)
            };
            data.push(json!({
                "object": "embedding",
                "index": data.len(),
                "embedding": embedding,
            }));
        }
    }
    let usage = tokens.map(|t| Usage::new(t, 0));
    let mut body = json!({
        "object": "list",
        "data": data,
        "model": call.upstream_model,
    });
    if let Some(t) = tokens {
        body["usage"] = json!({ "prompt_tokens": t, "total_tokens": t });
    }
    Ok(Embeddings {
        body: body.to_string().into(),
        usage,
    })
}

/// One InvokeModel call, its answer read per the model family.
async fn invoke(
    upstream: &Upstream<'_>,
    model: &str,
    body: Value,
    family: Family,
) -> Result<Batch, GatewayError> {
    let body = serde_json::to_vec(&body).map_err(|e| {
        GatewayError::Internal(format!("cannot serialize the InvokeModel body: {e}"))
    })?;
    let response = upstream
        .post(model, "invoke", body, "application/json")
        .await?;
    if !response.status().is_success() {
        return Err(upstream.error(response).await);
    }
    let header_tokens = response
        .headers()
        .get("x-amzn-bedrock-input-token-count")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let bytes = upstream.read_body(response, MAX_EMBEDDINGS_BYTES).await?;
    let answer: Value =
        serde_json::from_slice(&bytes).map_err(|_| protocol("the body is not JSON"))?;
    let numbers = |v: &Value| -> Result<Vec<Value>, GatewayError> {
        let items = v
            .as_array()
            .ok_or_else(|| protocol("an embedding is not an array"))?;
        if items.iter().all(Value::is_number) {
            Ok(items.clone())
        } else {
            Err(protocol("an embedding holds something other than numbers"))
        }
    };
    match family {
        Family::Titan { .. } => {
            let vector = answer
                .get("embedding")
                .or_else(|| answer.pointer("/embeddingsByType/float"))
                .ok_or_else(|| protocol("no 'embedding' in the Titan answer"))?;
            Ok(Batch {
                vectors: vec![numbers(vector)?],
                tokens: answer
                    .get("inputTextTokenCount")
                    .and_then(Value::as_u64)
                    .or(header_tokens),
            })
        }
        Family::Cohere { .. } => {
            let embeddings = answer
                .get("embeddings")
                .ok_or_else(|| protocol("no 'embeddings' in the Cohere answer"))?;
            // `embedding_types` makes it {"float": [...]}; older answers are a plain array.
            let list = embeddings.get("float").unwrap_or(embeddings);
            let vectors = list
                .as_array()
                .ok_or_else(|| protocol("'embeddings' is not an array"))?
                .iter()
                .map(numbers)
                .collect::<Result<_, _>>()?;
            Ok(Batch {
                vectors,
                tokens: header_tokens,
            })
        }
    }
}

/// OpenAI's base64 encoding of an embedding: the f32 values, little-endian, base64.
fn encode_base64(vector: &[Value]) -> Result<String, GatewayError> {
    let mut bytes = Vec::with_capacity(vector.len() * 4);
    for v in vector {
        let f = v
            .as_f64()
            .ok_or_else(|| protocol("an embedding value is not a number"))?;
        // Narrowing is the point: OpenAI's base64 format carries f32 values.
        #[allow(clippy::cast_possible_truncation)]
        bytes.extend_from_slice(&(f as f32).to_le_bytes());
    }
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn families_by_model_id() {
        assert_eq!(
            Family::of("amazon.titan-embed-text-v2:0").unwrap(),
            Family::Titan { v2: true }
        );
        assert_eq!(
            Family::of("amazon.titan-embed-text-v1").unwrap(),
            Family::Titan { v2: false }
        );
        assert_eq!(
            Family::of("cohere.embed-english-v3").unwrap(),
            Family::Cohere { v4: false }
        );
        assert_eq!(
            Family::of("us.cohere.embed-v4:0").unwrap(),
            Family::Cohere { v4: true }
        );
        assert!(Family::of("anthropic.claude-3-haiku-20240307-v1:0").is_err());
    }

    #[test]
    fn base64_is_little_endian_f32() {
        let encoded = encode_base64(&[json!(1.0), json!(-0.5)]).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        assert_eq!(bytes, [0, 0, 128, 63, 0, 0, 0, 191]);
    }
}

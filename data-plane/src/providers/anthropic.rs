//! The Anthropic Messages adapter (being built).

use super::{Call, EmbedCall, Embeddings, Reply};
use crate::error::GatewayError;

pub async fn call(call: &Call<'_>) -> Result<Reply, GatewayError> {
    Err(super::unsupported(
        call.provider.record.kind,
        "chat completions",
    ))
}

pub async fn embed(call: &EmbedCall<'_>) -> Result<Embeddings, GatewayError> {
    Err(super::unsupported(call.provider.record.kind, "embeddings"))
}

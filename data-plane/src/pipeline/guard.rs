//! Stage guardrails: the organization's guardrail policy applied to the prompt before anything
//! leaves the gateway (and before the cache, so a cached answer never serves a request the
//! policy would refuse). See [`shared::guardrails`] for policies, rules and detectors.
//!
//! One policy applies: the most specific of the key's, its team's, the route's and the
//! organization's ([`TenantView::guardrail_for`](crate::store::TenantView::guardrail_for)).
//! In order:
//! 1. `allowed_tools`: every tool the request defines must be allowed;
//! 2. `max_prompt_tokens`: the gateway's estimate of the prompt;
//! 3. `blocked_terms`: in any message text (or embeddings input);
//! 4. PII, in every message text, text part and tool-call argument (embeddings: every input
//!    string): `block` refuses when anything is found; `redact` replaces each finding with a
//!    placeholder (`[EMAIL_1]`), the same value with the same placeholder everywhere, and with
//!    `restore` hands the placeholders to the meter, which puts the values back in the answer.
//!
//! A refusal is a 400 `guardrail_blocked` naming the policy and the rule, never the text; every
//! decision (rule, action, count) goes to the usage event and the log. Token-id embeddings input
//! cannot be scanned, so a policy with PII or blocked terms refuses it (rule
//! `unscannable_input`).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;
use shared::guardrails::{Guardrail, PiiMode, Redactor, Rule};
use shared::usage::{GuardrailAction, GuardrailDecision};

use super::meter::Meter;
use super::route::Plan;
use super::{AuthContext, RequestMut};
use crate::error::GatewayError;
use crate::wire::{EmbeddingInput, Message};

/// The rule of an input the policy cannot inspect.
pub const UNSCANNABLE: &str = "unscannable_input";

/// Applies the policy that covers this request (if any) to `request`, in place. `Ok(true)`
/// when a policy applied (the request may have been rewritten), `Ok(false)` when none covers it.
pub(crate) fn apply(
    auth: &AuthContext,
    plan: &Plan,
    request: &mut RequestMut<'_>,
    body_bytes: usize,
    meter: &mut Meter,
) -> Result<bool, GatewayError> {
    let Some(tenant) = plan.candidates.first().map(|b| &b.tenant) else {
        return Ok(false);
    };
    let route_id = if plan.explicit {
        tenant.route(&plan.route).map(|r| r.id)
    } else {
        None
    };
    let guardrail = match tenant.guardrail_for(auth.key.key_id, auth.key.team_id, route_id) {
        None => return Ok(false),
        Some(Err(name)) => return Err(GatewayError::GuardrailUnavailable(name.to_owned())),
        Some(Ok(guardrail)) => Arc::clone(guardrail),
    };
    // A body no larger than the cap cannot hold more prompt tokens than it (every token is at
    // least one byte of the JSON it came in), so the tokenizer only runs near the limit.
    let over_cap = |max: u32, estimate: &dyn Fn() -> u64| {
        body_bytes as u64 > u64::from(max) && estimate() > u64::from(max)
    };
    match request {
        RequestMut::Chat(r) => chat(&guardrail, r, over_cap, meter)?,
        RequestMut::Embeddings(r) => embeddings(&guardrail, r, over_cap, meter)?,
    }
    Ok(true)
}

fn chat(
    guardrail: &Guardrail,
    request: &mut crate::wire::ChatRequest,
    over_cap: impl Fn(u32, &dyn Fn() -> u64) -> bool,
    meter: &mut Meter,
) -> Result<(), GatewayError> {
    let record = guardrail.record();
    if record.allowed_tools.is_some() {
        let tools = request.extra.get("tools").and_then(Value::as_array);
        for tool in tools.into_iter().flatten() {
            let name = tool
                .pointer("/function/name")
                .or_else(|| tool.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !guardrail.allows_tool(name) {
                return Err(block(guardrail, Rule::ALLOWED_TOOLS, 1, meter));
            }
        }
    }
    if let Some(max) = record.max_prompt_tokens
        && over_cap(max, &|| crate::tokens::estimate_prompt_tokens(request))
    {
        return Err(block(guardrail, Rule::MAX_PROMPT_TOKENS, 1, meter));
    }
    if !record.blocked_terms.is_empty() {
        let mut found = false;
        for message in &request.messages {
            for_each_text(message, |text| found |= guardrail.has_blocked_term(text));
        }
        if found {
            return Err(block(guardrail, Rule::BLOCKED_TERMS, 1, meter));
        }
    }
    if guardrail.pii_mode() == PiiMode::Off {
        return Ok(());
    }
    let mut redactor = guardrail.redactor();
    for message in &mut request.messages {
        redact_message(message, &mut redactor);
    }
    conclude(guardrail, redactor, meter)
}

fn embeddings(
    guardrail: &Guardrail,
    request: &mut crate::wire::EmbeddingsRequest,
    over_cap: impl Fn(u32, &dyn Fn() -> u64) -> bool,
    meter: &mut Meter,
) -> Result<(), GatewayError> {
    let record = guardrail.record();
    if let Some(max) = record.max_prompt_tokens
        && over_cap(max, &|| {
            crate::tokens::embedding_input_tokens(&request.input)
        })
    {
        return Err(block(guardrail, Rule::MAX_PROMPT_TOKENS, 1, meter));
    }
    let scans = !record.blocked_terms.is_empty() || guardrail.pii_mode() != PiiMode::Off;
    let texts: &mut [String] = match &mut request.input {
        EmbeddingInput::Text(text) => std::slice::from_mut(text),
        EmbeddingInput::Texts(texts) => texts,
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) if scans => {
            return Err(block(guardrail, UNSCANNABLE, 1, meter));
        }
        EmbeddingInput::Tokens(_) | EmbeddingInput::TokenBatches(_) => return Ok(()),
    };
    if texts.iter().any(|t| guardrail.has_blocked_term(t)) {
        return Err(block(guardrail, Rule::BLOCKED_TERMS, 1, meter));
    }
    if guardrail.pii_mode() == PiiMode::Off {
        return Ok(());
    }
    let mut redactor = guardrail.redactor();
    for text in texts.iter_mut() {
        if let Some(redacted) = redactor.scan(text) {
            *text = redacted;
        }
    }
    // Nothing to restore in a vector.
    conclude(guardrail, redactor, meter).map(|()| meter.clear_vault())
}

/// Records what PII scanning found: refuses in `block` mode, records the redactions (and
/// hands the placeholders over for restoring) in `redact` mode.
fn conclude(
    guardrail: &Guardrail,
    redactor: Redactor<'_>,
    meter: &mut Meter,
) -> Result<(), GatewayError> {
    let findings: BTreeMap<String, u32> = redactor.findings().clone();
    if findings.is_empty() {
        return Ok(());
    }
    if guardrail.pii_mode() == PiiMode::Block {
        let mut first = None;
        for (rule, count) in &findings {
            first.get_or_insert_with(|| rule.clone());
            decide(guardrail, rule, GuardrailAction::Blocked, *count, meter);
        }
        return Err(GatewayError::GuardrailBlocked {
            guardrail: guardrail.record().name.clone(),
            rule: first.unwrap_or_default(),
        });
    }
    for (rule, count) in &findings {
        decide(guardrail, rule, GuardrailAction::Redacted, *count, meter);
    }
    let values = findings.values().sum();
    let vault = redactor.into_vault();
    if guardrail.restores() && !vault.is_empty() {
        meter.set_vault(guardrail.id(), vault, values);
    }
    Ok(())
}

/// Records a refusal by `rule` and returns the error for it.
fn block(guardrail: &Guardrail, rule: &str, count: u32, meter: &mut Meter) -> GatewayError {
    decide(guardrail, rule, GuardrailAction::Blocked, count, meter);
    GatewayError::GuardrailBlocked {
        guardrail: guardrail.record().name.clone(),
        rule: rule.to_owned(),
    }
}

fn decide(
    guardrail: &Guardrail,
    rule: &str,
    action: GuardrailAction,
    count: u32,
    meter: &mut Meter,
) {
    let rule_label = if rule.starts_with("pii.custom.") {
        "pii.custom"
    } else {
        rule
    };
    metrics::counter!(
        "switchyard_guardrail_decisions_total",
        "rule" => rule_label.to_owned(),
        "action" => action.as_str(),
    )
    .increment(u64::from(count));
    tracing::info!(
        guardrail_id = %guardrail.id(),
        rule,
        action = action.as_str(),
        count,
        "guardrail decision"
    );
    meter.add_guardrail(GuardrailDecision {
        guardrail_id: guardrail.id(),
        rule: rule.to_owned(),
        action,
        count,
    });
}

/// Calls `f` with every text of `message`: a string content, each text part, each tool call's
/// arguments.
fn for_each_text(message: &Message, mut f: impl FnMut(&str)) {
    match &message.content {
        Some(Value::String(text)) => f(text),
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(text) = part.get("text").and_then(Value::as_str) {
                    f(text);
                }
            }
        }
        _ => {}
    }
    if let Some(calls) = message.extra.get("tool_calls").and_then(Value::as_array) {
        for call in calls {
            if let Some(args) = call.pointer("/function/arguments").and_then(Value::as_str) {
                f(args);
            }
        }
    }
}

/// Replaces every PII finding in `message`'s texts (see [`for_each_text`]) in place.
fn redact_message(message: &mut Message, redactor: &mut Redactor<'_>) {
    let mut rewrite = |value: &mut Value| {
        if let Value::String(text) = value
            && let Some(redacted) = redactor.scan(text)
        {
            *text = redacted;
        }
    };
    match &mut message.content {
        Some(value @ Value::String(_)) => rewrite(value),
        Some(Value::Array(parts)) => {
            for part in parts {
                if let Some(text) = part.get_mut("text") {
                    rewrite(text);
                }
            }
        }
        _ => {}
    }
    if let Some(calls) = message
        .extra
        .get_mut("tool_calls")
        .and_then(Value::as_array_mut)
    {
        for call in calls {
            if let Some(args) = call.pointer_mut("/function/arguments") {
                rewrite(args);
            }
        }
    }
}

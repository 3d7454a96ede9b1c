//! Presets for the OpenAI-compatible family: what differs, per provider kind, from sending the
//! client's body verbatim to `{base_url}/chat/completions` with `Authorization: Bearer <key>`.
//!
//! Every provider below speaks OpenAI's chat completions wire format, so the one adapter
//! (`providers::openai`) serves them all; a preset only says where to send (default base URL,
//! [`ProviderKind::default_base_url`]), whether a key is required, whether to ask for stream
//! usage with `stream_options`, and what to do with the few standard OpenAI parameters the
//! provider is documented to reject. Unknown fields still pass through verbatim (see the rule in
//! `crate::wire`): a provider's own extensions (`safe_prompt`, `top_k`, `provider`, …) reach it.
//!
//! # The table
//!
//! | kind | default base URL | key | `stream_options` | refused (400 naming it) | renamed / dropped |
//! | --- | --- | --- | --- | --- | --- |
//! | `openai` | `https://api.openai.com/v1` | required | sent | — | — |
//! | `openai_compatible` | none: `base_url` required | optional | sent | — | — |
//! | `mistral` | `https://api.mistral.ai/v1` | required | **omitted** [^mistral-strict] | `logprobs`, `top_logprobs`, `logit_bias` | `max_completion_tokens`→`max_tokens`, `seed`→`random_seed`; dropped: `user`, `store`, `metadata`, `service_tier`, `prompt_cache_key`, `safety_identifier`, `messages[].name` |
//! | `groq` | `https://api.groq.com/openai/v1` | required | sent | `n` > 1, `logprobs`, `top_logprobs`, `logit_bias` [^groq] | dropped: `messages[].name` |
//! | `deepseek` | `https://api.deepseek.com/v1` | required | sent | `n` > 1; `logprobs`, `top_logprobs` on `deepseek-reasoner*` [^deepseek] | `max_completion_tokens`→`max_tokens` |
//! | `together` | `https://api.together.xyz/v1` | required | sent | — | `max_completion_tokens`→`max_tokens` |
//! | `fireworks` | `https://api.fireworks.ai/inference/v1` | required | **omitted** [^fireworks] | — | `max_completion_tokens`→`max_tokens` |
//! | `xai` | `https://api.x.ai/v1` | required | sent | — [^xai] | — |
//! | `openrouter` | `https://openrouter.ai/api/v1` | required | sent [^openrouter] | `n` > 1 | `max_completion_tokens`→`max_tokens` |
//! | `vllm` | `http://localhost:8000/v1` | optional | sent [^vllm] | — | — |
//! | `ollama` | `http://localhost:11434/v1` | optional | sent [^ollama] | `n` > 1, `logit_bias` | `max_completion_tokens`→`max_tokens` |
//! | `llamacpp` | `http://localhost:8080/v1` | optional | **omitted** [^llamacpp] | `n` > 1 | `max_completion_tokens`→`max_tokens` |
//!
//! (`azure_openai` uses the same body handling with its own URL and `api-key` header: see
//! `providers::azure` and [`AZURE_OPENAI`].)
//!
//! **Refused** means: when the value asks for the feature (`n` above 1, `logprobs: true`,
//! `top_logprobs` above 0, a non-empty `logit_bias`) the request is refused with a 400 naming the
//! parameter before anything is sent, because the provider would either fail with a less clear
//! error or silently answer something else (one choice instead of several, no log
//! probabilities). When the value asks for nothing (`n: 1`, `logprobs: false`, `null`) the field
//! is removed instead, since some of these providers reject the field's mere presence.
//!
//! **Renamed** fields keep their meaning under the provider's name (`max_completion_tokens`, the
//! current OpenAI name, is `max_tokens` on servers that only document the older one; when both
//! are sent, `max_completion_tokens` wins, as at OpenAI). **Dropped** fields are harmless to drop:
//! bookkeeping the provider has no use for (`user`, `store`, `metadata`, …) or a participant
//! `name` on non-tool messages, which only nuances the prompt. Tool messages keep their `name`.
//!
//! **`stream_options`**: the gateway asks for the usage chunk (`include_usage: true`) on every
//! stream so streams are metered exactly. Where a server rejects the field or reports usage in
//! its final chunk anyway, it is omitted; if no usage arrives, the meter estimates and marks the
//! event estimated.
//!
//! **Key**: "required" kinds answer 502 `provider_unavailable` without calling out when the
//! provider record has no API key; local servers (vLLM, Ollama, llama.cpp) and generic
//! `openai_compatible` servers are called without `Authorization` when no key is set.
//!
//! Sources (read when the presets were written; providers change, so each rule names its reason):
//!
//! - OpenAI: <https://platform.openai.com/docs/api-reference/chat/create>.
//!
//! [^mistral-strict]: Mistral's API validates the body strictly and answers 422
//!     `extra_forbidden` ("Extra inputs are not permitted") for any field outside its schema,
//!     `stream_options` included; it reports usage in the final stream chunk on its own. Its
//!     schema names the seed `random_seed` and the output limit `max_tokens`, and has no log
//!     probabilities or token biases. <https://docs.mistral.ai/api/#tag/chat>,
//!     <https://github.com/mistralai/platform-docs-public/issues/7>,
//!     <https://github.com/yetone/avante.nvim/issues/2347>.
//! [^groq]: "The following fields are currently not supported and will result in a 400 error if
//!     they are supplied: `logprobs`, `logit_bias`, `top_logprobs`, `messages[].name`; if `N` is
//!     supplied, it must be equal to 1." <https://console.groq.com/docs/openai>.
//! [^deepseek]: DeepSeek documents `max_tokens` and no `n`
//!     (<https://api-docs.deepseek.com/api/create-chat-completion>); for `deepseek-reasoner`,
//!     "setting `logprobs`, `top_logprobs` will trigger an error" while sampling parameters are
//!     accepted and ignored (<https://api-docs.deepseek.com/guides/reasoning_model>).
//! [^fireworks]: Fireworks returns usage statistics on streaming responses too, in the final
//!     chunk. <https://fireworks.ai/docs/tools-sdks/openai-compatibility>.
//! [^xai]: xAI's reasoning models reject `presence_penalty`, `frequency_penalty` and `stop`; the
//!     set of reasoning models changes, so this is left to xAI's own 400, which reaches the
//!     client with xAI's message. <https://docs.x.ai/docs/guides/reasoning>.
//! [^openrouter]: OpenRouter's request schema has no `n` and documents `max_tokens`; it always
//!     includes usage, and `stream_options.include_usage` has no effect.
//!     <https://openrouter.ai/docs/api-reference/overview>.
//! [^vllm]: vLLM implements `stream_options.include_usage`, `n`, `logprobs` and `logit_bias`.
//!     <https://docs.vllm.ai/en/latest/serving/openai_compatible_server.html>.
//! [^ollama]: Ollama's OpenAI compatibility lists `stream_options.include_usage` and `max_tokens`
//!     among supported fields; `n` and `logit_bias` are not supported (and would be silently
//!     ignored). <https://docs.ollama.com/api/openai-compatibility>.
//! [^llamacpp]: llama.cpp's server refuses `n` other than 1 ("Only one completion choice is
//!     allowed") and puts usage in the final chunk of every stream.
//!     <https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md>,
//!     <https://github.com/ggml-org/llama.cpp/issues/15443>.

use serde_json::{Map, Value};
use shared::config::ProviderKind;

use crate::error::GatewayError;
use crate::wire::{ChatRequest, asks_for_something, unsupported_param};

/// How one provider kind differs from OpenAI. See the module's table.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    pub kind: ProviderKind,
    pub key: KeyPolicy,
    pub stream_usage: StreamUsage,
    /// Applied in order to the outgoing body.
    pub rules: &'static [Rule],
    /// Remove `name` from every message whose role is not `tool`.
    pub drop_message_names: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPolicy {
    /// A hosted API: calling it without a key cannot work, so a missing key is a configuration
    /// error (502 `provider_unavailable`) found before any network call.
    Required,
    /// A self-hosted server, often run without authentication: no key, no `Authorization`.
    Optional,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamUsage {
    /// Send `stream_options: {"include_usage": true}` (the client's other stream options kept).
    Ask,
    /// Send no `stream_options`: the server rejects it or reports usage on its own.
    Omit,
}

/// What to do with one top-level parameter.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub param: &'static str,
    pub action: Action,
    /// Only for upstream models whose id starts with this prefix; `None` for every model.
    pub model_prefix: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Removed; harmless to drop.
    Drop,
    /// Moved to this name (overwriting it: the OpenAI name is the more specific request).
    RenameTo(&'static str),
    /// Refused with a 400 naming the parameter when the value asks for the feature; removed
    /// when it does not (`n: 1`, `false`, `null`, `{}`).
    Refuse(Asks),
}

/// When a refused parameter's value asks for the unsupported feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asks {
    /// A number above 1 (`n`).
    MoreThanOne,
    /// Anything but `null`, `false`, `0`, `""`, `[]`, `{}`.
    Anything,
}

const fn rule(param: &'static str, action: Action) -> Rule {
    Rule {
        param,
        action,
        model_prefix: None,
    }
}

const MAX_TOKENS: Rule = rule("max_completion_tokens", Action::RenameTo("max_tokens"));
const ONE_CHOICE: Rule = rule("n", Action::Refuse(Asks::MoreThanOne));
const NO_LOGPROBS: Rule = rule("logprobs", Action::Refuse(Asks::Anything));
const NO_TOP_LOGPROBS: Rule = rule("top_logprobs", Action::Refuse(Asks::Anything));
const NO_LOGIT_BIAS: Rule = rule("logit_bias", Action::Refuse(Asks::Anything));

pub const OPENAI: Preset = Preset {
    kind: ProviderKind::OpenAi,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[],
    drop_message_names: false,
};

pub const OPENAI_COMPATIBLE: Preset = Preset {
    kind: ProviderKind::OpenAiCompatible,
    key: KeyPolicy::Optional,
    stream_usage: StreamUsage::Ask,
    rules: &[],
    drop_message_names: false,
};

/// Azure OpenAI: OpenAI's body handling. `providers::azure` decides `stream_options` from the
/// configured `api-version` (older versions reject it).
pub const AZURE_OPENAI: Preset = Preset {
    kind: ProviderKind::AzureOpenAi,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[],
    drop_message_names: false,
};

pub const MISTRAL: Preset = Preset {
    kind: ProviderKind::Mistral,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Omit,
    rules: &[
        NO_LOGPROBS,
        NO_TOP_LOGPROBS,
        NO_LOGIT_BIAS,
        MAX_TOKENS,
        rule("seed", Action::RenameTo("random_seed")),
        rule("user", Action::Drop),
        rule("store", Action::Drop),
        rule("metadata", Action::Drop),
        rule("service_tier", Action::Drop),
        rule("prompt_cache_key", Action::Drop),
        rule("safety_identifier", Action::Drop),
    ],
    drop_message_names: true,
};

pub const GROQ: Preset = Preset {
    kind: ProviderKind::Groq,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[ONE_CHOICE, NO_LOGPROBS, NO_TOP_LOGPROBS, NO_LOGIT_BIAS],
    drop_message_names: true,
};

pub const DEEPSEEK: Preset = Preset {
    kind: ProviderKind::DeepSeek,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[
        ONE_CHOICE,
        Rule {
            model_prefix: Some("deepseek-reasoner"),
            ..NO_LOGPROBS
        },
        Rule {
            model_prefix: Some("deepseek-reasoner"),
            ..NO_TOP_LOGPROBS
        },
        MAX_TOKENS,
    ],
    drop_message_names: false,
};

pub const TOGETHER: Preset = Preset {
    kind: ProviderKind::Together,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[MAX_TOKENS],
    drop_message_names: false,
};

pub const FIREWORKS: Preset = Preset {
    kind: ProviderKind::Fireworks,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Omit,
    rules: &[MAX_TOKENS],
    drop_message_names: false,
};

pub const XAI: Preset = Preset {
    kind: ProviderKind::Xai,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[],
    drop_message_names: false,
};

pub const OPENROUTER: Preset = Preset {
    kind: ProviderKind::OpenRouter,
    key: KeyPolicy::Required,
    stream_usage: StreamUsage::Ask,
    rules: &[ONE_CHOICE, MAX_TOKENS],
    drop_message_names: false,
};

pub const VLLM: Preset = Preset {
    kind: ProviderKind::Vllm,
    key: KeyPolicy::Optional,
    stream_usage: StreamUsage::Ask,
    rules: &[],
    drop_message_names: false,
};

pub const OLLAMA: Preset = Preset {
    kind: ProviderKind::Ollama,
    key: KeyPolicy::Optional,
    stream_usage: StreamUsage::Ask,
    rules: &[ONE_CHOICE, NO_LOGIT_BIAS, MAX_TOKENS],
    drop_message_names: false,
};

pub const LLAMACPP: Preset = Preset {
    kind: ProviderKind::LlamaCpp,
    key: KeyPolicy::Optional,
    stream_usage: StreamUsage::Omit,
    rules: &[ONE_CHOICE, MAX_TOKENS],
    drop_message_names: false,
};

/// The preset of an OpenAI-family kind; `None` for kinds with their own wire format.
pub fn for_kind(kind: ProviderKind) -> Option<&'static Preset> {
    Some(match kind {
        ProviderKind::OpenAi => &OPENAI,
        ProviderKind::OpenAiCompatible => &OPENAI_COMPATIBLE,
        ProviderKind::AzureOpenAi => &AZURE_OPENAI,
        ProviderKind::Mistral => &MISTRAL,
        ProviderKind::Groq => &GROQ,
        ProviderKind::DeepSeek => &DEEPSEEK,
        ProviderKind::Together => &TOGETHER,
        ProviderKind::Fireworks => &FIREWORKS,
        ProviderKind::Xai => &XAI,
        ProviderKind::OpenRouter => &OPENROUTER,
        ProviderKind::Vllm => &VLLM,
        ProviderKind::Ollama => &OLLAMA,
        ProviderKind::LlamaCpp => &LLAMACPP,
        ProviderKind::Mock
        | ProviderKind::Anthropic
        | ProviderKind::Gemini
        | ProviderKind::Bedrock => return None,
    })
}

impl Preset {
    /// The JSON body for `{base}/chat/completions`: the client's request with `model` replaced,
    /// `stream_options` per [`Preset::stream_usage`] and the preset's rules applied. Fails with
    /// a 400 naming the parameter when a refused one asks for its feature.
    pub fn chat_body(
        &self,
        request: &ChatRequest,
        upstream_model: &str,
    ) -> Result<Vec<u8>, GatewayError> {
        let ask_usage = self.stream_usage == StreamUsage::Ask;
        let upstream = request.to_upstream_with(upstream_model, ask_usage);
        if self.rules.is_empty() && !self.drop_message_names {
            // The common case (OpenAI itself, vLLM, …): serialize straight from the request.
            return serde_json::to_vec(&upstream).map_err(serialize_error);
        }
        let mut body = match serde_json::to_value(&upstream).map_err(serialize_error)? {
            Value::Object(map) => map,
            _ => {
                return Err(GatewayError::Internal(
                    "a chat request did not serialize to a JSON object".to_owned(),
                ));
            }
        };
        self.apply(&mut body, upstream_model)?;
        serde_json::to_vec(&body).map_err(serialize_error)
    }

    /// Applies the rules to a serialized body.
    fn apply(
        &self,
        body: &mut Map<String, Value>,
        upstream_model: &str,
    ) -> Result<(), GatewayError> {
        let applicable = self.rules.iter().filter(|r| {
            r.model_prefix
                .is_none_or(|prefix| upstream_model.starts_with(prefix))
        });
        for rule in applicable {
            let Some(value) = body.remove(rule.param) else {
                continue;
            };
            match rule.action {
                Action::Drop => {}
                Action::RenameTo(to) => {
                    if !value.is_null() {
                        body.insert(to.to_owned(), value);
                    }
                }
                Action::Refuse(asks) => {
                    let asked = match asks {
                        Asks::MoreThanOne => value.as_f64().is_some_and(|n| n > 1.0),
                        Asks::Anything => asks_for_something(&value),
                    };
                    if asked {
                        return Err(self.refusal(rule.param, asks));
                    }
                }
            }
        }
        if self.drop_message_names
            && let Some(Value::Array(messages)) = body.get_mut("messages")
        {
            for message in messages.iter_mut().filter_map(Value::as_object_mut) {
                if message.get("role").and_then(Value::as_str) != Some("tool") {
                    message.remove("name");
                }
            }
        }
        Ok(())
    }

    fn refusal(&self, param: &str, asks: Asks) -> GatewayError {
        let provider = self.kind.as_str();
        let message = match asks {
            Asks::MoreThanOne => format!(
                "This model's provider ({provider}) returns one choice per request; '{param}' above 1 is not supported."
            ),
            Asks::Anything => {
                format!(
                    "The parameter '{param}' is not supported by this model's provider ({provider})."
                )
            }
        };
        unsupported_param(param, &message)
    }
}

fn serialize_error(e: serde_json::Error) -> GatewayError {
    GatewayError::Internal(format!("cannot serialize the upstream body: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::*;

    fn body(preset: &Preset, request: Value, model: &str) -> Result<Value, GatewayError> {
        let request = ChatRequest::parse(request.to_string().as_bytes()).expect("valid request");
        preset
            .chat_body(&request, model)
            .map(|b| serde_json::from_slice(&b).expect("JSON body"))
    }

    fn refused_param(result: Result<Value, GatewayError>) -> String {
        match result {
            Err(GatewayError::InvalidRequest {
                param: Some(p),
                message,
            }) => {
                assert!(message.contains(&p), "{message}");
                p
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn every_openai_family_kind_has_a_preset_and_others_none() {
        for kind in ProviderKind::ALL {
            match for_kind(kind) {
                Some(preset) => {
                    assert!(kind.is_openai_family(), "{kind:?}");
                    assert_eq!(preset.kind, kind);
                }
                None => assert!(!kind.is_openai_family(), "{kind:?}"),
            }
        }
        // Hosted APIs need a key; self-hosted servers do not.
        for kind in [
            ProviderKind::Vllm,
            ProviderKind::Ollama,
            ProviderKind::LlamaCpp,
        ] {
            assert_eq!(for_kind(kind).unwrap().key, KeyPolicy::Optional);
            assert!(
                kind.default_base_url()
                    .unwrap()
                    .starts_with("http://localhost:")
            );
        }
        assert_eq!(
            for_kind(ProviderKind::Groq).unwrap().key,
            KeyPolicy::Required
        );
    }

    #[test]
    fn openai_forwards_everything_verbatim() {
        let out = body(
            &OPENAI,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi", "name": "al"}],
                   "n": 3, "logprobs": true, "logit_bias": {"50256": -100}, "x_new": {"a": 1},
                   "stream": true, "max_completion_tokens": 9}),
            "gpt-4o",
        )
        .unwrap();
        assert_eq!(out["model"], "gpt-4o");
        assert_eq!(out["n"], 3);
        assert_eq!(out["logprobs"], true);
        assert_eq!(out["x_new"], json!({"a": 1}));
        assert_eq!(out["messages"][0]["name"], "al");
        assert_eq!(out["max_completion_tokens"], 9);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn groq_refuses_what_it_rejects_and_drops_names() {
        let base = json!({"model": "m", "messages": [
            {"role": "user", "content": "hi", "name": "al"},
            {"role": "tool", "tool_call_id": "c1", "name": "get_weather", "content": "sunny"}
        ]});
        for (param, value) in [
            ("n", json!(2)),
            ("logprobs", json!(true)),
            ("top_logprobs", json!(3)),
            ("logit_bias", json!({"1": 5})),
        ] {
            let mut request = base.clone();
            request[param] = value;
            assert_eq!(refused_param(body(&GROQ, request, "llama")), param);
        }
        // Default values ask for nothing: removed, not refused.
        let mut request = base.clone();
        request["n"] = json!(1);
        request["logprobs"] = json!(false);
        request["x_groq_ext"] = json!(true);
        request["stream"] = json!(true);
        let out = body(&GROQ, request, "llama").unwrap();
        assert!(
            out.get("n").is_none() && out.get("logprobs").is_none(),
            "{out}"
        );
        assert_eq!(out["x_groq_ext"], true, "unknown fields still pass: {out}");
        assert!(out["messages"][0].get("name").is_none(), "{out}");
        assert_eq!(out["messages"][1]["name"], "get_weather", "tool names kept");
        assert_eq!(out["stream_options"]["include_usage"], true);
    }

    #[test]
    fn mistral_renames_drops_and_omits_stream_options() {
        let out = body(
            &MISTRAL,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi", "name": "al"}],
                   "max_tokens": 5, "max_completion_tokens": 7, "seed": 42, "user": "u-1",
                   "metadata": {"k": "v"}, "safe_prompt": true, "stream": true,
                   "stream_options": {"include_usage": true}}),
            "mistral-large-latest",
        )
        .unwrap();
        assert_eq!(out["max_tokens"], 7, "max_completion_tokens wins: {out}");
        assert!(out.get("max_completion_tokens").is_none());
        assert_eq!(out["random_seed"], 42);
        assert!(out.get("seed").is_none() && out.get("user").is_none());
        assert!(out.get("metadata").is_none());
        assert!(out.get("stream_options").is_none(), "{out}");
        assert_eq!(out["safe_prompt"], true, "Mistral's own fields pass");
        assert!(out["messages"][0].get("name").is_none());
        assert_eq!(
            refused_param(body(
                &MISTRAL,
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logprobs": true}),
                "mistral-small"
            )),
            "logprobs"
        );
    }

    #[test]
    fn deepseek_refuses_logprobs_only_on_the_reasoner() {
        let request = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "logprobs": true});
        assert_eq!(
            refused_param(body(&DEEPSEEK, request.clone(), "deepseek-reasoner")),
            "logprobs"
        );
        let out = body(&DEEPSEEK, request, "deepseek-chat").unwrap();
        assert_eq!(out["logprobs"], true);
    }

    #[test]
    fn local_servers_refuse_several_choices() {
        for preset in [&OLLAMA, &LLAMACPP] {
            let request =
                json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2});
            assert_eq!(refused_param(body(preset, request, "llama3")), "n");
        }
        let out = body(
            &LLAMACPP,
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true, "mirostat": 2}),
            "llama3",
        )
        .unwrap();
        assert!(out.get("stream_options").is_none());
        assert_eq!(out["mirostat"], 2);
    }
}

"""Guardrails as the official SDKs meet them: each PII detector found (and not found) in block
mode, redaction with and without restoration (whole and streamed, both SDKs), and the policy
filters, each refusal a 400 ``guardrail_blocked`` naming the rule and never the text."""

import anthropic
import openai
import pytest

from cache_env import KEY_PII_BLOCK, KEY_PII_MASK, KEY_PII_OFF, KEY_PII_REDACT, MODEL_CHAT, MODEL_ECHO
from clients import ask, claude, oai

# (rule, text with one finding, look-alike text with none)
DETECTORS = [
    ("pii.email", "write to jane.doe@example.com today", "write to jane.doe at example dot com, or @jane"),
    ("pii.phone", "call me on +44 20 7946 0958", "order 1234567890 shipped on 2024-01-15"),
    ("pii.card", "my card is 4111 1111 1111 1111", "ticket 4111 1111 1111 1112 is not a card"),
    ("pii.iban", "IBAN DE89 3704 0044 0532 0130 00", "IBAN DE89 3704 0044 0532 0130 01 fails its checksum"),
    ("pii.ip", "the server is 192.168.10.20", "version 999.1.1 and 1.2.3"),
    ("pii.custom.employee_id", "employee EMP-123456 asked", "employee EMP-12 asked"),
]


@pytest.mark.parametrize("rule,positive,negative", DETECTORS, ids=[d[0] for d in DETECTORS])
def test_each_detector_blocks_what_it_finds_and_only_that(rule, positive, negative):
    with pytest.raises(openai.BadRequestError) as raised:
        oai(KEY_PII_BLOCK).chat.completions.create(model=MODEL_ECHO, messages=ask(positive))
    assert raised.value.code == "guardrail_blocked"
    assert f"`{rule}`" in raised.value.message
    for word in positive.split():
        if len(word) >= 4 and (any(c.isdigit() for c in word) or "@" in word):
            assert word not in raised.value.message, "the matched text is never echoed"
    answer = oai(KEY_PII_BLOCK).chat.completions.create(model=MODEL_ECHO, messages=ask(negative))
    assert answer.choices[0].message.content == negative


def test_block_mode_refuses_in_anthropic_format_too():
    with pytest.raises(anthropic.BadRequestError) as raised:
        claude(KEY_PII_BLOCK).messages.create(
            model=MODEL_ECHO, max_tokens=32, messages=ask("mail jane.doe@example.com")
        )
    assert raised.value.body["error"]["type"] == "invalid_request_error"
    assert raised.value.body["error"]["code"] == "guardrail_blocked"
    assert "pii.email" in raised.value.body["error"]["message"]


PII = "Reach jane.doe@example.com or +44 20 7946 0958 about EMP-123456."


def test_redact_mode_sends_placeholders_and_restores_the_answer():
    # The mock echoes what reached it: with restoration the client reads its own values back.
    answer = oai(KEY_PII_REDACT).chat.completions.create(model=MODEL_ECHO, messages=ask(PII))
    assert answer.choices[0].message.content == PII


def test_redact_mode_without_restore_shows_what_the_provider_saw():
    answer = oai(KEY_PII_MASK).chat.completions.create(model=MODEL_ECHO, messages=ask(PII))
    assert answer.choices[0].message.content == (
        "Reach [EMAIL_1] or [PHONE_1] about [EMPLOYEE_ID_1]."
    )


def test_restoration_in_a_streamed_openai_answer():
    stream = oai(KEY_PII_REDACT).chat.completions.create(
        model=MODEL_ECHO, messages=ask(PII), stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == PII


def test_restoration_in_a_streamed_anthropic_answer():
    with claude(KEY_PII_REDACT).messages.stream(
        model=MODEL_ECHO, max_tokens=64, messages=ask(PII)
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == PII


def test_off_mode_lets_pii_through():
    answer = oai(KEY_PII_OFF).chat.completions.create(model=MODEL_ECHO, messages=ask(PII))
    assert answer.choices[0].message.content == PII


@pytest.mark.parametrize(
    "rule,kwargs",
    [
        ("blocked_terms", {"messages": ask("Any news on Project Falcon?")}),
        ("max_prompt_tokens", {"messages": ask("word " * 400)}),
        (
            "allowed_tools",
            {
                "messages": ask("tidy up"),
                "tools": [{"type": "function", "function": {"name": "delete_everything", "parameters": {"type": "object"}}}],
            },
        ),
    ],
)
def test_policy_filters_refuse_naming_the_rule(rule, kwargs):
    with pytest.raises(openai.BadRequestError) as raised:
        oai(KEY_PII_OFF).chat.completions.create(model=MODEL_CHAT, **kwargs)
    assert raised.value.code == "guardrail_blocked"
    assert f"`{rule}`" in raised.value.message
    assert "falcon" not in raised.value.message.lower()


def test_an_allowed_tool_passes():
    answer = oai(KEY_PII_OFF).chat.completions.create(
        model=MODEL_CHAT,
        messages=ask("weather?"),
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
    )
    assert answer.choices[0].message.content

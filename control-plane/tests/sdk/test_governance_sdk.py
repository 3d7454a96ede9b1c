"""Budgets and rate limits as the official SDKs meet them.

- ``SY_KEY_BUDGET``: a key whose own (lifetime) budget is $0.000001, so every request's worst
  case exceeds it;
- ``SY_KEY_RPM``: a key with ``rpm_limit`` 1.

An exhausted budget must surface as the SDKs' ``RateLimitError`` with ``code``
``budget_exceeded``, and must NOT be retried (the gateway sends ``x-should-retry: false``, which
both SDKs honour): the clients here keep retries on, and ``sdk_python.rs`` checks afterwards
that the gateway metered exactly one request of each SDK on that key.
"""

import anthropic
import openai
import pytest

from sy_env import BASE_URL, MODEL_ECHO, TIMEOUT, env

KEY_BUDGET = env("SY_KEY_BUDGET")
KEY_RPM = env("SY_KEY_RPM")
HELLO = [{"role": "user", "content": "Hello"}]


def test_an_exhausted_budget_is_a_rate_limit_error_the_openai_sdk_does_not_retry():
    client = openai.OpenAI(
        base_url=f"{BASE_URL}/v1", api_key=KEY_BUDGET, max_retries=2, timeout=TIMEOUT
    )
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=MODEL_ECHO, messages=HELLO)
    assert raised.value.code == "budget_exceeded"
    assert raised.value.type == "insufficient_quota"
    assert "key budget" in raised.value.message
    assert raised.value.response.headers["x-should-retry"] == "false"


def test_an_exhausted_budget_is_a_rate_limit_error_the_anthropic_sdk_does_not_retry():
    client = anthropic.Anthropic(
        base_url=BASE_URL, api_key=KEY_BUDGET, max_retries=2, timeout=TIMEOUT
    )
    with pytest.raises(anthropic.RateLimitError) as raised:
        client.messages.create(model=MODEL_ECHO, max_tokens=16, messages=HELLO)
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert "key budget" in raised.value.body["error"]["message"]
    assert raised.value.response.headers["x-should-retry"] == "false"


def test_a_rate_limit_shows_its_headers_and_refuses_with_retry_after():
    client = openai.OpenAI(
        base_url=f"{BASE_URL}/v1", api_key=KEY_RPM, max_retries=0, timeout=TIMEOUT
    )
    first = client.chat.completions.with_raw_response.create(model=MODEL_ECHO, messages=HELLO)
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    assert first.parse().choices[0].message.content == "Hello"
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model=MODEL_ECHO, messages=HELLO)
    assert raised.value.code == "rate_limit_exceeded"
    assert 1 <= int(raised.value.response.headers["retry-after"]) <= 60

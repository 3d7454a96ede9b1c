"""The official ``anthropic`` Python SDK against the gateway's Anthropic-compatible endpoint
(``POST /v1/messages``), routed to any provider: the OpenAI-family fake, the mock, and every
other provider in ``SY_CHAT_MODELS``.

Both ways the SDK authenticates are exercised: ``api_key`` (sent as ``x-api-key``) and
``auth_token`` (sent as ``Authorization: Bearer``).
"""

import anthropic
import pytest

from sy_env import (
    BASE_URL,
    CHAT_MODELS,
    CONTENT,
    KEY,
    MODEL_CHAT,
    MODEL_ECHO,
    TIMEOUT,
    TOOL_ARGS,
    TOOL_INPUT,
    TOOL_RESULT,
    tool_model,
)

AUTH_MODES = ["x-api-key", "bearer"]

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}

WEATHER_QUESTION = [{"role": "user", "content": "What is the weather in Paris, in celsius?"}]


def client(auth: str = "x-api-key", key: str = KEY) -> anthropic.Anthropic:
    if auth == "bearer":
        return anthropic.Anthropic(
            base_url=BASE_URL, api_key=None, auth_token=key, max_retries=0, timeout=TIMEOUT
        )
    return anthropic.Anthropic(base_url=BASE_URL, api_key=key, max_retries=0, timeout=TIMEOUT)


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_message_against_an_openai_family_deployment(auth):
    message = client(auth).messages.create(
        model=MODEL_CHAT,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.id
    assert isinstance(message.model, str)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == CONTENT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)


def test_message_against_the_mock():
    message = client().messages.create(
        model=MODEL_ECHO,
        max_tokens=64,
        messages=[
            {"role": "user", "content": "an earlier question"},
            {"role": "assistant", "content": "an earlier answer"},
            {"role": "user", "content": [{"type": "text", "text": "the quick brown fox"}]},
        ],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "the quick brown fox"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_message(model):
    message = client().messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert message.content[0].text == CONTENT
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (12, 5)


@pytest.mark.parametrize("model", CHAT_MODELS)
@pytest.mark.parametrize("auth", AUTH_MODES)
def test_stream_text(model, auth):
    with client(auth).messages.stream(
        model=model,
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "Say hello."}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == CONTENT
    assert len([p for p in pieces if p]) >= 2, "incremental"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == CONTENT
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 5)


def test_stream_the_mock():
    with client().messages.stream(
        model=MODEL_ECHO, max_tokens=64, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "one two three"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_use(model):
    message = client().messages.create(
        model=tool_model(model),
        max_tokens=256,
        system="You are a weather assistant.",
        tools=[WEATHER_TOOL],
        messages=WEATHER_QUESTION,
    )
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].id
    assert uses[0].name == "get_weather"
    assert uses[0].input == TOOL_INPUT
    assert (message.usage.input_tokens, message.usage.output_tokens) == (20, 10)

    # The second turn: the tool_use block goes back with its tool_result.
    followup = client().messages.create(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=WEATHER_QUESTION
        + [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": TOOL_RESULT}],
            },
        ],
    )
    assert followup.content[0].text == CONTENT
    assert followup.stop_reason == "end_turn"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_use_streamed(model):
    partial = ""
    with client("bearer").messages.stream(
        model=tool_model(model),
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=WEATHER_QUESTION,
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                partial += event.partial_json
        final = stream.get_final_message()
    assert partial == TOOL_ARGS
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].id
    assert uses[0].name == "get_weather"
    assert uses[0].input == TOOL_INPUT
    assert (final.usage.input_tokens, final.usage.output_tokens) == (20, 10)


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_bad_key_is_an_authentication_error(auth):
    with pytest.raises(anthropic.AuthenticationError) as err:
        client(auth, "sk-sy-not-a-real-key").messages.create(
            model=MODEL_ECHO, max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 401
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "authentication_error"


def test_unknown_model_is_not_found():
    with pytest.raises(anthropic.NotFoundError) as err:
        client().messages.create(
            model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 404
    assert err.value.body["error"]["type"] == "not_found_error"


def test_invalid_request_is_a_bad_request():
    # `messages` must be a list; extra_body overrides what the SDK sends.
    with pytest.raises(anthropic.BadRequestError) as err:
        client().messages.create(
            model=MODEL_ECHO, max_tokens=16, messages=[], extra_body={"messages": "not a list"}
        )
    assert err.value.status_code == 400
    assert err.value.body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("auth", AUTH_MODES)
def test_count_tokens(auth):
    short = client(auth).messages.count_tokens(
        model=MODEL_CHAT, messages=[{"role": "user", "content": "Say hello."}]
    )
    longer = client(auth).messages.count_tokens(
        model=MODEL_CHAT,
        system="You are a weather assistant.",
        tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "Say hello. " * 50}],
    )
    assert short.input_tokens > 0
    assert longer.input_tokens > short.input_tokens


def test_count_tokens_for_an_unknown_model_is_not_found():
    with pytest.raises(anthropic.NotFoundError):
        client().messages.count_tokens(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )

"""The official ``openai`` Python SDK against the gateway's OpenAI-compatible API (``/v1``)."""

import json

import openai
import pytest

from sy_env import (
    BASE_URL,
    CHAT_MODELS,
    CONTENT,
    EMBED_MODELS,
    KEY,
    MODEL_CHAT,
    MODEL_CUT,
    MODEL_ECHO,
    ROUTE_FAILOVER,
    TIMEOUT,
    TOOL_ARGS,
    TOOL_INPUT,
    TOOL_RESULT,
    tool_model,
)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}

WEATHER_QUESTION = [
    {"role": "system", "content": "You are a weather assistant."},
    {"role": "user", "content": "What is the weather in Paris, in celsius?"},
]


def client(key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key=key, max_retries=0, timeout=TIMEOUT)


def test_chat_with_the_mock_echoes_the_last_user_message():
    answer = client().chat.completions.create(
        model=MODEL_ECHO,
        messages=[
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "the quick brown fox"},
        ],
    )
    assert answer.object == "chat.completion"
    assert answer.id
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content == "the quick brown fox"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.completion_tokens > 0


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_chat(model):
    answer = client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=64,
    )
    assert answer.object == "chat.completion"
    assert answer.id
    assert isinstance(answer.created, int)
    assert answer.choices[0].message.content == CONTENT
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (12, 5)
    assert answer.usage.total_tokens == 17


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_streaming(model):
    stream = client().chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hello."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "one id for the whole stream"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CONTENT
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2, "incremental"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    # The usage chunk comes last, with no choices.
    assert chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (12, 5)


def test_streaming_the_mock_without_usage():
    stream = client().chat.completions.create(
        model=MODEL_ECHO,
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three four"
    assert all(c.usage is None for c in chunks), "usage only when asked for"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_call(model):
    answer = client().chat.completions.create(
        model=tool_model(model), messages=WEATHER_QUESTION, tools=[WEATHER_TOOL], tool_choice="auto"
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert len(calls) == 1
    assert calls[0].id
    assert calls[0].type == "function"
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == TOOL_INPUT
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (20, 10)

    # The second turn: the call and its result go back (to the same provider's default model,
    # which answers with its text).
    followup = client().chat.completions.create(
        model=model,
        messages=WEATHER_QUESTION
        + [
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": calls[0].id, "content": TOOL_RESULT},
        ],
        tools=[WEATHER_TOOL],
    )
    assert followup.choices[0].message.content == CONTENT
    assert followup.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("model", CHAT_MODELS)
def test_tool_call_streamed(model):
    stream = client().chat.completions.create(
        model=tool_model(model),
        messages=WEATHER_QUESTION,
        tools=[WEATHER_TOOL],
        stream=True,
        stream_options={"include_usage": True},
    )
    calls = {}
    finishes = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.finish_reason:
                finishes.append(choice.finish_reason)
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                if delta.id:
                    call["id"] += delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
    assert finishes == ["tool_calls"]
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["arguments"] == TOOL_ARGS
    assert (usage.prompt_tokens, usage.completion_tokens) == (20, 10)


@pytest.mark.parametrize("model,tokens_per_input", EMBED_MODELS, ids=[m for m, _ in EMBED_MODELS])
@pytest.mark.parametrize("encoding_format", ["float", None], ids=["float", "sdk-default-base64"])
def test_embeddings(model, tokens_per_input, encoding_format):
    # Without an explicit format the SDK asks for base64 and decodes it itself.
    extra = {"encoding_format": encoding_format} if encoding_format else {}
    answer = client().embeddings.create(model=model, input=["first text", "second text"], **extra)
    assert answer.object == "list"
    assert [d.index for d in answer.data] == [0, 1]
    for item in answer.data:
        assert item.object == "embedding"
        assert len(item.embedding) == 8
        assert all(isinstance(x, float) for x in item.embedding)
    assert answer.data[0].embedding != answer.data[1].embedding, "one vector per input"
    if tokens_per_input is None:
        assert answer.usage.prompt_tokens > 0, "estimated when the provider reports none"
    else:
        assert answer.usage.prompt_tokens == 2 * tokens_per_input
    assert answer.usage.total_tokens == answer.usage.prompt_tokens

    single = client().embeddings.create(model=model, input="first text", **extra)
    assert len(single.data) == 1
    assert single.data[0].embedding == pytest.approx(answer.data[0].embedding)
    if tokens_per_input is not None:
        assert single.usage.prompt_tokens == tokens_per_input


def test_models_list():
    ids = {m.id for m in client().models.list()}
    assert {m for m, _ in EMBED_MODELS} <= ids
    for model in [MODEL_ECHO, MODEL_CHAT, MODEL_CUT, *CHAT_MODELS, *map(tool_model, CHAT_MODELS)]:
        assert model in ids


def test_bad_key_is_an_authentication_error():
    with pytest.raises(openai.AuthenticationError) as err:
        client("sk-sy-not-a-real-key").chat.completions.create(
            model=MODEL_ECHO, messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 401


def test_unknown_model_is_not_found():
    with pytest.raises(openai.NotFoundError) as err:
        client().chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.status_code == 404
    assert err.value.code == "model_not_found"


def test_bad_body_is_a_bad_request():
    with pytest.raises(openai.BadRequestError) as err:
        client().chat.completions.create(model=MODEL_ECHO, messages="not a list of messages")
    assert err.value.status_code == 400
    assert "messages" in err.value.message


def test_cut_stream_raises_an_api_error():
    stream = client().chat.completions.create(
        model=MODEL_CUT, messages=[{"role": "user", "content": "Say hello."}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "Hello from"
    assert err.value.code == "stream_truncated"


def test_a_route_fails_over_when_its_primary_answers_500():
    """Creating deployments and a route is all it takes: the client sees the fallback's answer."""
    client = openai.OpenAI(
        base_url=f"{BASE_URL}/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT
    )
    raw = client.chat.completions.with_raw_response.create(
        model=ROUTE_FAILOVER, messages=[{"role": "user", "content": "Hi"}]
    )
    assert raw.headers["x-switchyard-route"] == ROUTE_FAILOVER
    assert raw.headers["x-switchyard-attempts"] == "2"
    assert raw.headers["x-switchyard-provider"] == "anthropic"
    reply = raw.parse()
    assert reply.choices[0].message.content == CONTENT

    stream = client.chat.completions.create(
        model=ROUTE_FAILOVER,
        stream=True,
        messages=[{"role": "user", "content": "Hi"}],
    )
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices
    )
    assert text == CONTENT

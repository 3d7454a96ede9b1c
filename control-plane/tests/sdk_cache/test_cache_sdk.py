"""The response cache as the official SDKs meet it: ``x-switchyard-cache`` on every answer,
hits identical to the stored answer, streams replayed in each SDK's format, no sharing across
organizations, and the semantic threshold."""

import uuid

import pytest

from cache_env import (
    CONTENT,
    KEY_EXACT,
    KEY_OTHER_ORG,
    KEY_SEMANTIC,
    KEY_STRICT,
    MODEL_CHAT,
)
from clients import ask, claude, oai

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def fresh(text: str) -> str:
    """A prompt no earlier run or test asked (the cache outlives a test)."""
    return f"{text} [{uuid.uuid4().hex[:8]}]"


def test_a_repeated_request_is_a_miss_then_a_hit_with_the_same_answer():
    prompt = ask(fresh("What is the capital of France?"))
    first = oai(KEY_EXACT).chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=prompt)
    assert first.headers["x-switchyard-cache"] == "miss"
    second = oai(KEY_EXACT).chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=prompt)
    assert second.headers["x-switchyard-cache"] == "hit"
    a, b = first.parse(), second.parse()
    # The fake gives every completion a fresh id: the same id is the stored answer.
    assert b.id == a.id
    assert b.choices[0].message.content == CONTENT
    assert b.usage.total_tokens == a.usage.total_tokens


@pytest.mark.parametrize("directive", ["no-cache", "no-store"])
def test_cache_control_bypasses_the_cache(directive):
    prompt = ask(fresh("bypass me"))
    client = oai(KEY_EXACT)
    stored = client.chat.completions.create(model=MODEL_CHAT, messages=prompt)
    bypassed = client.chat.completions.with_raw_response.create(
        model=MODEL_CHAT, messages=prompt, extra_headers={"Cache-Control": directive}
    )
    assert bypassed.headers["x-switchyard-cache"] == "bypass"
    assert bypassed.parse().id != stored.id, "answered upstream"


def test_an_answer_that_never_uses_the_cache_says_bypass():
    raw = oai(KEY_OTHER_ORG).models.with_raw_response.list()
    assert raw.headers["x-switchyard-cache"] == "bypass"


def test_a_stored_answer_is_replayed_as_an_openai_stream():
    prompt = ask(fresh("Stream it back"))
    client = oai(KEY_EXACT)
    stored = client.chat.completions.create(model=MODEL_CHAT, messages=prompt)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL_CHAT, messages=prompt, stream=True, stream_options={"include_usage": True}
    )
    assert raw.headers["x-switchyard-cache"] == "hit"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == CONTENT
    assert chunks[0].id == stored.id
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].usage.total_tokens == stored.usage.total_tokens


def test_a_streamed_answer_is_stored_and_replayed_as_an_anthropic_stream():
    client = claude(KEY_EXACT)
    prompt = ask(fresh("Tell me about caching"))
    first = client.messages.with_raw_response.create(
        model=MODEL_CHAT, max_tokens=64, messages=prompt, stream=True
    )
    assert first.headers["x-switchyard-cache"] == "miss"
    first_text = "".join(
        e.delta.text for e in first.parse() if e.type == "content_block_delta"
    )
    second = client.messages.with_raw_response.create(
        model=MODEL_CHAT, max_tokens=64, messages=prompt, stream=True
    )
    assert second.headers["x-switchyard-cache"] == "hit"
    events = list(second.parse())
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == first_text == CONTENT
    stop = [e.delta.stop_reason for e in events if e.type == "message_delta"]
    assert stop == ["end_turn"]
    # And as a whole message.
    whole = client.messages.with_raw_response.create(model=MODEL_CHAT, max_tokens=64, messages=prompt)
    assert whole.headers["x-switchyard-cache"] == "hit"
    assert whole.parse().content[0].text == CONTENT


def test_two_organizations_never_share_an_entry():
    prompt = ask(fresh("Same question, two organizations"))
    mine = oai(KEY_EXACT).chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=prompt)
    assert mine.headers["x-switchyard-cache"] == "miss"
    theirs = oai(KEY_OTHER_ORG).chat.completions.with_raw_response.create(
        model=MODEL_CHAT, messages=prompt
    )
    assert theirs.headers["x-switchyard-cache"] == "miss", "no cross-organization hit"
    assert theirs.parse().id != mine.parse().id
    again = oai(KEY_OTHER_ORG).chat.completions.with_raw_response.create(
        model=MODEL_CHAT, messages=prompt
    )
    assert again.headers["x-switchyard-cache"] == "hit"


def test_the_semantic_cache_answers_paraphrases_above_its_threshold_only():
    topic = uuid.uuid4().hex[:8]
    question = f"What is the capital city of France {topic}?"
    paraphrase = f"what is the capital city of france {topic}"
    client = oai(KEY_SEMANTIC)
    first = client.chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=ask(question))
    assert first.headers["x-switchyard-cache"] == "miss"
    near = client.chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=ask(paraphrase))
    assert near.headers["x-switchyard-cache"] == "hit"
    similarity = float(near.headers["x-switchyard-cache-similarity"])
    assert 0.8 <= similarity <= 1.0
    assert near.parse().id == first.parse().id
    far = client.chat.completions.with_raw_response.create(
        model=MODEL_CHAT, messages=ask(f"How do I bake sourdough bread {topic}?")
    )
    assert far.headers["x-switchyard-cache"] == "miss"
    assert "x-switchyard-cache-similarity" not in far.headers
    # Another system prompt is another bucket, whatever the similarity.
    system = [{"role": "system", "content": "Answer in French."}] + ask(question)
    other = client.chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=system)
    assert other.headers["x-switchyard-cache"] == "miss"
    # A rewording that shares most words is close enough for the 0.8 key (a hit stores
    # nothing) …
    reworded = ask(f"what is the capital of france please {topic}")
    loose = client.chat.completions.with_raw_response.create(model=MODEL_CHAT, messages=reworded)
    assert loose.headers["x-switchyard-cache"] == "hit"
    assert 0.8 <= float(loose.headers["x-switchyard-cache-similarity"]) < 0.999
    # … but not for a 0.999 key of the same organization (same index, same entry).
    strict = oai(KEY_STRICT).chat.completions.with_raw_response.create(
        model=MODEL_CHAT, messages=reworded
    )
    assert strict.headers["x-switchyard-cache"] == "miss"

"""Clients of the official SDKs, built the one way the suite uses them."""

import anthropic
import openai

from cache_env import BASE_URL, TIMEOUT


def oai(key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{BASE_URL}/v1", api_key=key, max_retries=0, timeout=TIMEOUT)


def claude(key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=BASE_URL, api_key=key, max_retries=0, timeout=TIMEOUT)


def ask(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]

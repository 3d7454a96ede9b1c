"""Shared settings for the SDK suite.

The suite is driven by ``control-plane/tests/sdk_python.rs``: it starts the ``control-plane``
binary (zero-setup: the data plane embedded, one port), the testkit fakes, provisions a tenant
through the control API and runs ``python -m pytest control-plane/tests/sdk`` with:

- ``SY_BASE_URL``: the gateway origin, e.g. ``http://127.0.0.1:PORT`` (no path);
- ``SY_KEY``: a gateway API key (``sk-sy-…``);
- ``SY_MODEL_ECHO``: a deployment on the built-in mock provider (echoes the last user message);
- ``SY_MODEL_CHAT`` / ``SY_MODEL_CUT``: OpenAI-family deployments on the fake OpenAI upstream
  (its default model and ``fake-cut-stream``);
- ``SY_ROUTE_FAILOVER``: a route (priority) whose first deployment answers 500 and whose second,
  on the Anthropic fake, answers the default text;
- ``SY_CHAT_MODELS``: comma-separated deployments, one per upstream provider (OpenAI-family,
  Anthropic, Gemini, …), that answer "Hello from the fake upstream" with usage 12/5. For each,
  the deployment ``<name>-tool`` goes to the same provider's ``fake-tool`` model, which calls
  ``get_weather`` with ``{"city":"Paris","unit":"celsius"}`` (usage 20/10);
- ``SY_EMBED_MODELS``: comma-separated embeddings deployments (8-dimensional vectors), each
  ``name=N`` when the provider reports N tokens per input, or just ``name`` when it reports no
  usage and the gateway estimates it (Gemini).

Every client is built with ``max_retries=0`` and a bounded timeout, so a gateway bug fails fast
instead of being retried or waited out.
"""

import os

CONTENT = "Hello from the fake upstream"
TOOL_ARGS = '{"city":"Paris","unit":"celsius"}'
TOOL_INPUT = {"city": "Paris", "unit": "celsius"}
TOOL_RESULT = '{"temperature":18,"condition":"sunny"}'
# Seconds, per request.
TIMEOUT = 20.0


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run this suite through "
            "`cargo test -p control-plane --test sdk_python`"
        )
    return value


def env_list(name: str) -> list[str]:
    """A comma-separated list; collection fails (not skips) when it is empty."""
    values = [v for v in env(name).split(",") if v]
    if not values:
        raise RuntimeError(f"{name} is empty")
    return values


BASE_URL = env("SY_BASE_URL").rstrip("/")
KEY = env("SY_KEY")
MODEL_ECHO = env("SY_MODEL_ECHO")
MODEL_CHAT = env("SY_MODEL_CHAT")
MODEL_CUT = env("SY_MODEL_CUT")
ROUTE_FAILOVER = env("SY_ROUTE_FAILOVER")
CHAT_MODELS = env_list("SY_CHAT_MODELS")
# (deployment, tokens per input the provider reports, or None when the gateway estimates).
EMBED_MODELS = [
    (name, int(tokens) if tokens else None)
    for name, _, tokens in (entry.partition("=") for entry in env_list("SY_EMBED_MODELS"))
]


def tool_model(chat_model: str) -> str:
    """The deployment on the same provider as ``chat_model`` that answers with a tool call."""
    return f"{chat_model}-tool"

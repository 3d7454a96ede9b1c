"""Settings of the cache and guardrails SDK suite.

Driven by ``control-plane/tests/sdk_python.rs``
(``official_sdks_meet_the_cache_and_guardrails``): a ``control-plane`` and a ``data-plane``
process on Postgres and a ``redis-server`` of the test's own, two organizations provisioned
through the control API, then ``pytest -m "not redis_down"``; then Redis is stopped and
``pytest -m redis_down`` runs. Variables:

- ``SY_BASE_URL``: the data plane's origin; ``SY_METRICS_URL``: its ``/metrics``;
- ``SY_MODEL_CHAT``: a deployment on the fake OpenAI upstream (answers "Hello from the fake
  upstream", a fresh completion id each time); ``SY_MODEL_ECHO``: the built-in mock, which echoes
  the last user message (what reached the "provider", after redaction);
- ``SY_KEY_EXACT``: organization A, ``cache: exact``; ``SY_KEY_OTHER_ORG``: organization B (same
  model names), ``cache: exact``;
- ``SY_KEY_SEMANTIC`` / ``SY_KEY_STRICT``: organization A, ``cache: semantic`` through A's
  embedding deployment with ``min_similarity`` 0.8 / 0.999;
- ``SY_KEY_PII_BLOCK`` / ``SY_KEY_PII_REDACT`` / ``SY_KEY_PII_MASK`` / ``SY_KEY_PII_OFF``: keys
  with a key-scoped guardrail each: PII ``block``; ``redact`` with ``restore``; ``redact``
  without; ``off`` — every built-in detector plus the custom pattern ``employee_id``
  (``EMP-\\d{6}``); the ``off`` one also has the filters: blocked term ``project falcon``,
  ``max_prompt_tokens`` 200, ``allowed_tools`` [``get_weather``].
"""

import os

CONTENT = "Hello from the fake upstream"
TIMEOUT = 20.0


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run this suite through "
            "`cargo test -p control-plane --test sdk_python`"
        )
    return value


BASE_URL = env("SY_BASE_URL").rstrip("/")
METRICS_URL = env("SY_METRICS_URL")
MODEL_CHAT = env("SY_MODEL_CHAT")
MODEL_ECHO = env("SY_MODEL_ECHO")
KEY_EXACT = env("SY_KEY_EXACT")
KEY_OTHER_ORG = env("SY_KEY_OTHER_ORG")
KEY_SEMANTIC = env("SY_KEY_SEMANTIC")
KEY_STRICT = env("SY_KEY_STRICT")
KEY_PII_BLOCK = env("SY_KEY_PII_BLOCK")
KEY_PII_REDACT = env("SY_KEY_PII_REDACT")
KEY_PII_MASK = env("SY_KEY_PII_MASK")
KEY_PII_OFF = env("SY_KEY_PII_OFF")

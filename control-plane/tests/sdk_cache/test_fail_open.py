"""Run after the harness stopped Redis: the cache fails open (requests go upstream, the
answer says ``miss``) and the data plane's metrics say so."""

import urllib.request
import uuid

import pytest

from cache_env import CONTENT, KEY_EXACT, METRICS_URL, MODEL_CHAT
from clients import ask, oai

pytestmark = pytest.mark.redis_down


def test_with_redis_down_requests_go_upstream_and_metrics_say_why():
    for _ in range(2):
        raw = oai(KEY_EXACT).chat.completions.with_raw_response.create(
            model=MODEL_CHAT, messages=ask(f"redis is down {uuid.uuid4().hex}")
        )
        assert raw.headers["x-switchyard-cache"] == "miss"
        assert raw.parse().choices[0].message.content == CONTENT
    with urllib.request.urlopen(METRICS_URL, timeout=10) as response:
        metrics = response.read().decode()
    failures = [
        line
        for line in metrics.splitlines()
        if line.startswith('switchyard_cache_errors_total{operation="lookup"}')
    ]
    assert failures, metrics
    assert float(failures[0].split()[-1]) >= 2

"""A target that cannot be delivered before the notification's deadline ends as failed, even
with attempts left."""

from __future__ import annotations

import pytest

from tests.conftest import Hub


@pytest.fixture(scope="module")
def parent_env() -> dict[str, str]:
    return {"TOCSIN_RETRY_DEADLINE_SECONDS": "2", "TOCSIN_MAX_ATTEMPTS": "50"}


def test_retries_end_as_failed_at_the_deadline(hub: Hub) -> None:
    channel = hub.register("d-1", hub.mail)
    hub.emulator.post("/control/channels/script", json={
        "channelUri": channel, "answers": [{"status": 503, "headers": {"Retry-After": "1"}}] * 50})

    doc = hub.wait(hub.send({"installationId": "d-1"}))

    posts = hub.received(channel)
    assert doc["outcomes"]["failed"] == 1
    assert sum(doc["outcomes"].values()) == doc["targeted"] == 1
    assert 2 <= len(posts) <= 3  # about one post a second for two seconds, not fifty
    assert all(p["status"] == 503 for p in posts)

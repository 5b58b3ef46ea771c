"""What WNS answers becomes the right outcome, and retryable targets come back until they land or
run out of attempts (TOCSIN_MAX_ATTEMPTS=3 in these tests)."""

from __future__ import annotations

from typing import Any

from tests.conftest import Hub


def _script(hub: Hub, channel: str, *answers: dict[str, Any]) -> None:
    resp = hub.emulator.post("/control/channels/script",
                             json={"channelUri": channel, "answers": list(answers)})
    assert resp.status_code == 204, resp.text


def _statuses(hub: Hub, channel: str) -> list[int]:
    return [p["status"] for p in hub.received(channel)]


def test_transient_failures_are_retried_until_delivered(hub: Hub) -> None:
    channel = hub.register("o-retry", hub.mail)
    _script(hub, channel, {"status": 503, "headers": {"Retry-After": "1"}}, {"status": 500})

    doc = hub.wait(hub.send({"installationId": "o-retry"}))

    assert _statuses(hub, channel) == [503, 500, 200]
    assert doc["outcomes"]["delivered"] == 1
    assert sum(doc["outcomes"].values()) == doc["targeted"] == 1


def test_retries_stop_at_the_attempt_limit_as_failed(hub: Hub) -> None:
    channel = hub.register("o-fail", hub.news)
    _script(hub, channel, *[{"status": 503}] * 5)

    doc = hub.wait(hub.send({"installationId": "o-fail"}))

    assert _statuses(hub, channel) == [503, 503, 503]
    assert doc["outcomes"]["failed"] == 1
    assert sum(doc["outcomes"].values()) == doc["targeted"] == 1
    assert hub.installation("o-fail")["pushChannelExpired"] is False


def test_throttled_target_waits_for_retry_after(hub: Hub) -> None:
    channel = hub.register("o-throttle", hub.mail)
    _script(hub, channel, {"status": 406, "headers": {"Retry-After": "1"}},
            {"status": 200, "headers": {"X-WNS-Status": "channelthrottled"}})

    doc = hub.wait(hub.send({"installationId": "o-throttle"}))

    posts = hub.received(channel)
    assert [p["status"] for p in posts] == [406, 200, 200]
    assert posts[1]["at"] - posts[0]["at"] >= 0.9  # Retry-After honoured, not a tight loop
    assert doc["outcomes"]["delivered"] == 1 and doc["outcomes"]["throttled"] == 0


def test_many_targets_with_transient_failures_all_land_and_counts_add_up(hub: Hub) -> None:
    channels = [hub.register(f"o-many-{n}", (hub.mail, hub.news)[n % 2]) for n in range(12)]
    for channel in channels[::3]:
        _script(hub, channel, {"status": 503}, {"status": 429})

    doc = hub.wait(hub.send({"everyone": True}))

    assert doc["targeted"] == 12
    assert doc["outcomes"]["delivered"] == 12
    assert all(_statuses(hub, c)[-1] == 200 for c in channels)


def test_forbidden_is_counted_and_never_deletes_the_channel(hub: Hub) -> None:
    channel = hub.register("o-403", hub.mail)
    _script(hub, channel, {"status": 403})

    doc = hub.wait(hub.send({"installationId": "o-403"}))

    assert doc["outcomes"]["forbidden"] == 1
    assert _statuses(hub, channel) == [403]
    assert hub.installation("o-403")["pushChannelExpired"] is False
    hub.wait(hub.send({"installationId": "o-403"}))
    assert _statuses(hub, channel) == [403, 200]


def test_a_bad_message_is_rejected_once_and_the_channel_kept(hub: Hub) -> None:
    channel = hub.register("o-400", hub.news)
    _script(hub, channel, {"status": 400}, {"status": 413}, {"status": 405})

    docs = [hub.wait(hub.send({"installationId": "o-400"})) for _ in range(3)]

    assert [d["outcomes"]["rejected"] for d in docs] == [1, 1, 1]
    assert _statuses(hub, channel) == [400, 413, 405]
    assert hub.installation("o-400")["pushChannelExpired"] is False


def test_dropped_is_counted_as_dropped(hub: Hub) -> None:
    channel = hub.register("o-drop", hub.mail)
    _script(hub, channel, {"status": 200, "headers": {"X-WNS-Status": "dropped"}})

    doc = hub.wait(hub.send({"installationId": "o-drop"}))

    assert doc["outcomes"]["dropped"] == 1
    assert _statuses(hub, channel) == [200]


def test_a_401_refreshes_the_token_once_and_resends(hub: Hub) -> None:
    channel = hub.register("o-401", hub.news)
    hub.wait(hub.send({"installationId": "o-401"}))  # the child now holds a token
    before = hub.emulator.get("/control/stats").json()["tokenRequests"]
    _script(hub, channel, {"status": 401})

    doc = hub.wait(hub.send({"installationId": "o-401"}))

    assert doc["outcomes"]["delivered"] == 1
    assert _statuses(hub, channel) == [200, 401, 200]
    assert hub.emulator.get("/control/stats").json()["tokenRequests"] == before + 1

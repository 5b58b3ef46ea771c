"""The child against everything WNS does: token lifecycle, credentials refused, app throttling,
random faults, resets and timeouts, and the details kept with each outcome."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from common.cli.localstack import LocalStack
from common.signing import sign
from common.wire import BATCH_PATH
from tests.conftest import Hub


@pytest.fixture(scope="module")
def parent_env() -> dict[str, str]:
    # Enough attempts that 20 % random 503s cannot plausibly exhaust them (0.2^10 per target).
    return {"TOCSIN_MAX_ATTEMPTS": "10"}


@pytest.fixture(scope="module")
def child_env() -> dict[str, str]:
    return {"TOCSIN_CHILD_READ_TIMEOUT_SECONDS": "1"}


def _control(hub: Hub, path: str, body: dict[str, Any] | None = None) -> None:
    resp = hub.emulator.post(path, json=body or {})
    assert resp.status_code == 204, resp.text


def _token_requests(hub: Hub) -> int:
    return int(hub.emulator.get("/control/stats").json()["tokenRequests"])


def _statuses(hub: Hub, channel: str) -> list[int]:
    return [p["status"] for p in hub.received(channel)]


def _wait_for(condition: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _signed_batch(stack: LocalStack, app: str, channels: list[str]) -> dict[str, Any]:
    """Post a batch straight to an app's child, signed as the parent would."""
    assert stack.secrets is not None
    creds = stack.secrets.app(app)
    body = json.dumps({"batch_id": "direct", "app": app,
                       "payloads": [{"type": "toast", "body": "<toast/>"}],
                       "items": [{"id": str(n), "channel": c} for n, c in enumerate(channels)]
                       }).encode()
    resp = httpx.post(stack.child_url(app) + BATCH_PATH, content=body, timeout=30, headers={
        "Content-Type": "application/json",
        **sign(creds["signing_key_id"], creds["signing_key"].encode(), "POST", BATCH_PATH, body)})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_a_connection_reset_and_a_read_timeout_are_retried(hub: Hub) -> None:
    reset = hub.register("w-reset", hub.mail)
    slow = hub.register("w-slow", hub.news)
    _control(hub, "/control/channels/script", {"channelUri": reset, "answers": [{"reset": True}]})
    _control(hub, "/control/channels/script",
             {"channelUri": slow, "answers": [{"status": 200, "delaySeconds": 3}]})

    doc = hub.wait(hub.send({"everyone": True}))

    assert doc["outcomes"]["delivered"] == 2
    assert _statuses(hub, reset) == [0, 200]  # 0: the emulator reset the connection
    # The slow answer is recorded when the emulator finally gives it, after the child gave up
    # and the retry had already been delivered.
    _wait_for(lambda: len(hub.received(slow)) == 2)
    assert _statuses(hub, slow) == [200, 200]


def test_a_token_revoked_mid_broadcast_is_refreshed_exactly_once(hub: Hub) -> None:
    channels = [hub.register(f"w-tok-{n}", hub.mail) for n in range(40)]
    hub.wait(hub.send({"installationId": "w-tok-0"}))  # the child now holds a token
    before = _token_requests(hub)
    _control(hub, "/control/latency", {"minSeconds": 0.5, "maxSeconds": 0.6})
    try:
        notification_id = hub.send({"everyone": True}, apps=[hub.mail])
        _wait_for(lambda: hub.notification(notification_id)["state"] == "dispatching")
        time.sleep(0.3)  # the posts are in flight, waiting out the latency
        _control(hub, "/control/tokens/revoke")
        doc = hub.wait(notification_id)
    finally:
        _control(hub, "/control/latency", {"minSeconds": 0, "maxSeconds": 0})

    assert doc["outcomes"]["delivered"] == 40
    assert _token_requests(hub) == before + 1
    assert all(_statuses(hub, c)[-1] == 200 for c in channels)
    assert sum(_statuses(hub, c).count(401) for c in channels) >= 1


def test_a_short_lived_token_is_refreshed_every_time_it_expires(hub: Hub) -> None:
    hub.register("w-short", hub.news)
    _control(hub, "/control/tokens", {"lifetimeSeconds": 1})
    _control(hub, "/control/tokens/revoke")
    try:
        before = _token_requests(hub)
        for _ in range(3):
            assert hub.wait(hub.send({"installationId": "w-short"}))["outcomes"]["delivered"] == 1
            time.sleep(1.1)
    finally:
        _control(hub, "/control/tokens", {"lifetimeSeconds": 86400})
    # One fresh token per send: the first, and again after each expiry (not only the first).
    assert _token_requests(hub) - before == 3


def test_refused_credentials_pause_the_app_until_resumed(stack: LocalStack, hub: Hub) -> None:
    news = hub.register("w-cred-news", hub.news)
    mail = hub.register("w-cred-mail", hub.mail)
    app = next(a for a in stack.config.apps if a.name == hub.news)
    assert stack.secrets is not None
    secret = stack.secrets.app(app.name)["client_secret"]
    emulated = {"identity": app.identity, "tenant_id": app.tenant_id}
    hub.emulator.post("/control/apps", json={**emulated, "secret": "rotated-elsewhere"})
    _control(hub, "/control/tokens/revoke")
    try:
        notification_id = hub.send({"everyone": True})
        _wait_for(lambda: hub.api.get(f"/v1/hubs/{hub.name}/apps/{hub.news}")
                  .json()["health"]["pausedAt"] is not None)
        _wait_for(lambda: 200 in _statuses(hub, mail))  # the other app keeps sending
        doc = hub.notification(notification_id)
        assert doc["state"] == "dispatching"
        by_app = {a["app"]: a["outcomes"] for a in doc["apps"]}
        assert by_app[hub.mail]["delivered"] == 1
        assert by_app[hub.news]["retry"] == 1
        health = hub.api.get(f"/v1/hubs/{hub.name}/apps/{hub.news}").json()["health"]
        assert "credentials" in health["pausedReason"]
        assert health["recentOutcomes"]["counts"]["credentials_invalid"] >= 1
        assert [p for p in hub.received(news) if p["status"] == 200] == []
        # The child answers a whole batch credentials_invalid without posting any of it.
        fresh = [hub.mint(hub.news) for _ in range(3)]
        direct = _signed_batch(stack, hub.news, fresh)
        assert [r["outcome"] for r in direct["results"]] == ["credentials_invalid"] * 3
        assert all(hub.received(c) == [] for c in fresh)
    finally:
        hub.emulator.post("/control/apps", json={**emulated, "secret": secret})

    resumed = hub.api.post(f"/v1/hubs/{hub.name}/apps/{hub.news}/resume")
    assert resumed.status_code == 200 and resumed.json()["health"]["pausedAt"] is None
    doc = hub.wait(notification_id)
    assert doc["outcomes"]["delivered"] == 2
    assert _statuses(hub, news)[-1] == 200


def test_an_app_throttled_app_waits_while_another_app_keeps_sending(
    stack: LocalStack, hub: Hub
) -> None:
    trigger = hub.register("w-thr-0", hub.mail)
    mail = [hub.register(f"w-thr-m{n}", hub.mail) for n in range(3)]
    news = [hub.register(f"w-thr-n{n}", hub.news) for n in range(3)]
    _control(hub, "/control/channels/script", {"channelUri": trigger, "answers": [
        {"status": 406, "headers": {"X-WNS-Status": "appthrottled", "Retry-After": "3"}}]})

    first_id = hub.send({"installationId": "w-thr-0"})
    _wait_for(lambda: hub.received(trigger))
    throttled_at = hub.received(trigger)[0]["at"]
    _wait_for(lambda: hub.api.get(f"/v1/hubs/{hub.name}/apps/{hub.mail}")
              .json()["health"]["throttledUntil"] is not None)
    # The child itself holds the app back: a batch during the wait posts nothing.
    direct = _signed_batch(stack, hub.mail, [mail[0]])
    assert direct["results"][0]["outcome"] == "throttled"
    assert direct["app_throttled_for"] > 0
    assert hub.received(mail[0]) == []

    doc = hub.wait(hub.send({"everyone": True}), timeout=30)
    first = hub.wait(first_id)

    news_times = [hub.received(c)[0]["at"] for c in news]
    mail_times = [hub.received(c)[0]["at"] for c in mail]
    assert max(news_times) < throttled_at + 2.5  # the other app did not wait
    assert min(mail_times) >= throttled_at + 2.9  # the throttled app waited as told
    assert doc["outcomes"]["delivered"] == 7
    assert first["outcomes"]["delivered"] == 1  # the throttled target itself came back too
    assert hub.received(trigger)[1]["at"] >= throttled_at + 2.9


def test_twenty_percent_503_with_retry_after_still_delivers_everything(hub: Hub) -> None:
    channels = [hub.register(f"w-flaky-{n}", (hub.mail, hub.news)[n % 2]) for n in range(100)]
    _control(hub, "/control/faults",
             {"rates": [{"status": 503, "rate": 0.2, "headers": {"Retry-After": "1"}}]})
    try:
        doc = hub.wait(hub.send({"everyone": True}), timeout=90)
    finally:
        _control(hub, "/control/faults", {"rates": []})

    assert doc["targeted"] == 100
    assert doc["outcomes"]["delivered"] == 100
    assert all(_statuses(hub, c)[-1] == 200 for c in channels)
    assert sum(_statuses(hub, c).count(503) for c in channels) > 0


def test_wns_details_are_kept_with_the_installations_last_outcome(hub: Hub) -> None:
    hub.register("w-detail", hub.mail)
    hub.wait(hub.send({"installationId": "w-detail"},
                      headers={"X-WNS-RequestForStatus": "true"}))

    last = hub.installation("w-detail")["lastOutcome"]

    assert last["outcome"] == "delivered"
    assert last["wns"]["status"] == "received"
    assert last["wns"]["device_connection_status"] == "connected"
    assert last["wns"]["msg_id"] and last["wns"]["debug_trace"]

    gone = hub.register("w-detail-gone", hub.news)
    _control(hub, "/control/channels/expire", {"channelUri": gone})
    hub.wait(hub.send({"installationId": "w-detail-gone"}))
    last = hub.installation("w-detail-gone")["lastOutcome"]
    assert last["outcome"] == "channel_gone"
    assert "expired" in last["wns"]["error_description"]


def test_every_optional_header_reaches_wns_and_each_post_has_its_own_correlation_vector(
    hub: Hub
) -> None:
    channel = hub.register("w-headers", hub.mail)
    headers = {"X-WNS-Cache-Policy": "no-cache", "X-WNS-TTL": "60", "X-WNS-Tag": "score1",
               "X-WNS-Group": "match7", "X-WNS-PRIORITY": "2", "X-WNS-RequestForStatus": "false"}

    for _ in range(2):
        hub.wait(hub.send({"installationId": "w-headers"}, kind="tile",
                          body="<tile><visual/></tile>", headers=headers))

    first, second = hub.received(channel)
    assert {k: first["headers"][k] for k in headers} == headers
    assert first["headers"]["X-WNS-Type"] == "wns/tile"
    assert first["headers"]["MS-CV"] != second["headers"]["MS-CV"]


def test_channel_and_app_throttling_thresholds_are_waited_out(hub: Hub) -> None:
    channel = hub.register("w-rate", hub.mail)
    news = [hub.register(f"w-rate-{n}", hub.news) for n in range(8)]
    _control(hub, "/control/throttling",
             {"channel_per_second": 1, "app_per_second": 4, "app_retry_after": 1})
    try:
        ids = [hub.send({"installationId": "w-rate"}) for _ in range(3)]
        broadcast = hub.send({"everyone": True}, apps=[hub.news])
        docs = [hub.wait(i, timeout=60) for i in [*ids, broadcast]]
    finally:
        _control(hub, "/control/throttling", {})

    assert all(d["outcomes"]["delivered"] == d["targeted"] for d in docs)
    assert docs[-1]["targeted"] == 8
    wns_statuses = [p["wns_status"] for p in hub.received(channel)]
    assert wns_statuses.count("received") == 3 and "channelthrottled" in wns_statuses
    assert any(406 in _statuses(hub, c) for c in news)
    assert all(_statuses(hub, c)[-1] == 200 for c in news)

"""End to end: register → send → the app's child posts to the WNS emulator → outcome in the parent."""

from __future__ import annotations

import time

from common.cli.localstack import LocalStack
from tests.conftest import Hub


def test_send_to_one_installation_reaches_wns_exactly_with_its_apps_token(hub: Hub) -> None:
    channel = hub.register("device-1", hub.mail)
    body = '<toast><visual><binding template="ToastGeneric"><text>Ünïcode ✓</text></binding></visual></toast>'

    doc = hub.wait(hub.send({"installationId": "device-1"}, body,
                            headers={"X-WNS-TTL": "3600", "x-wns-priority": "1"}))

    assert doc["targeted"] == 1
    assert doc["outcomes"]["delivered"] == 1
    [post] = hub.received(channel)
    assert post["status"] == 200
    assert post["body"] == body
    assert post["headers"]["X-WNS-Type"] == "wns/toast"
    assert post["headers"]["Content-Type"] == "text/xml"
    assert post["headers"]["X-WNS-TTL"] == "3600"
    assert post["headers"]["X-WNS-PRIORITY"] == "1"
    assert post["token_app"] == hub.sid(hub.mail)
    assert post["channel_app"] == hub.sid(hub.mail)


def test_raw_notification_is_posted_as_octet_stream(hub: Hub) -> None:
    channel = hub.register("device-raw", hub.news)

    doc = hub.wait(hub.send({"installationId": "device-raw"}, '{"sync": true}', kind="raw"))

    assert doc["outcomes"]["delivered"] == 1
    [post] = hub.received(channel)
    assert post["headers"]["X-WNS-Type"] == "wns/raw"
    assert post["headers"]["Content-Type"] == "application/octet-stream"
    assert post["body"] == '{"sync": true}'


def test_tag_send_reaches_exactly_the_tagged_installations(hub: Hub) -> None:
    tagged = [hub.register("t-1", hub.mail, tags=["sports", "en"]),
              hub.register("t-2", hub.news, tags=["sports"])]
    untagged = [hub.register("t-3", hub.mail, tags=["weather"]),
                hub.register("t-4", hub.news)]

    doc = hub.wait(hub.send({"tag": "sports"}))

    assert doc["targeted"] == 2
    assert doc["outcomes"]["delivered"] == 2
    assert all(len(hub.received(c)) == 1 for c in tagged)
    assert all(hub.received(c) == [] for c in untagged)


def test_user_send_reaches_every_device_of_that_user(hub: Hub) -> None:
    mine = [hub.register("u-1", hub.mail, user="alice"), hub.register("u-2", hub.news, user="alice")]
    other = hub.register("u-3", hub.mail, user="bob")

    doc = hub.wait(hub.send({"userId": "alice"}))

    assert doc["outcomes"]["delivered"] == 2
    assert all(len(hub.received(c)) == 1 for c in mine)
    assert hub.received(other) == []


def test_broadcast_reaches_the_whole_hub_through_each_apps_own_child(stack: LocalStack, hub: Hub) -> None:
    ours = {hub.register(f"b-{n}", app): app
            for n, app in enumerate([hub.mail, hub.news, hub.mail, hub.news, hub.news])}
    other_hub = Hub(stack)
    theirs = other_hub.register("b-0", hub.mail)

    doc = hub.wait(hub.send({"everyone": True}))

    assert doc["targeted"] == 5
    assert doc["outcomes"]["delivered"] == 5
    assert {a["app"]: a["targeted"] for a in doc["apps"]} == {hub.mail: 2, hub.news: 3}
    for channel, app in ours.items():
        [post] = hub.received(channel)
        # No token of app A is ever presented on app B's channel.
        assert post["token_app"] == post["channel_app"] == hub.sid(app)
    assert other_hub.received(theirs) == []


def test_send_limited_to_one_app(hub: Hub) -> None:
    mail = hub.register("l-1", hub.mail)
    news = hub.register("l-2", hub.news)

    doc = hub.wait(hub.send({"everyone": True}, apps=[hub.news]))

    assert doc["outcomes"]["delivered"] == 1
    assert hub.received(mail) == []
    assert len(hub.received(news)) == 1


def test_reregistering_replaces_the_channel_without_duplicates(hub: Hub) -> None:
    old = hub.register("r-1", hub.mail, tags=["a"])
    new = hub.register("r-1", hub.mail, tags=["b"])

    doc = hub.wait(hub.send({"everyone": True}))

    assert doc["targeted"] == 1
    assert hub.received(old) == []
    assert len(hub.received(new)) == 1
    assert hub.installation("r-1")["tags"] == ["b"]


def test_gone_channels_are_retired_and_not_sent_to_again(hub: Hub) -> None:
    expired = hub.register("g-410", hub.mail)
    invalid = hub.register("g-404", hub.news)
    live = hub.register("g-ok", hub.news)
    hub.emulator.post("/control/channels/expire", json={"channelUri": expired})
    hub.emulator.post("/control/channels/invalidate", json={"channelUri": invalid})

    first = hub.wait(hub.send({"everyone": True}))

    assert first["outcomes"]["channel_gone"] == 2
    assert first["outcomes"]["delivered"] == 1
    assert [p["status"] for p in hub.received(expired)] == [410]
    assert [p["status"] for p in hub.received(invalid)] == [404]
    for installation_id, reason in (("g-410", "410"), ("g-404", "404")):
        doc = hub.installation(installation_id)
        assert doc["pushChannelExpired"] is True
        assert reason in doc["retired"]["reason"]

    second = hub.wait(hub.send({"everyone": True}))

    assert second["targeted"] == 1
    assert len(hub.received(expired)) == 1 and len(hub.received(invalid)) == 1
    assert len(hub.received(live)) == 2


def test_channel_reregistered_after_the_batch_formed_is_kept(hub: Hub) -> None:
    old = hub.register("k-1", hub.mail)
    hub.emulator.post("/control/channels/expire", json={"channelUri": old})
    hub.emulator.post("/control/channels/latency", json={"channelUri": old, "latencySeconds": 2})

    notification_id = hub.send({"installationId": "k-1"})
    deadline = time.monotonic() + 10
    while hub.notification(notification_id)["state"] != "dispatching":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.5)  # the batch has formed; the emulator holds the post for 2 s
    renewed = hub.register("k-1", hub.mail)
    doc = hub.wait(notification_id)

    assert doc["outcomes"]["channel_gone"] == 1
    installation = hub.installation("k-1")
    assert installation["pushChannelExpired"] is False
    assert installation["pushChannel"] == renewed
    hub.wait(hub.send({"installationId": "k-1"}))
    assert len(hub.received(renewed)) == 1


def test_send_to_unknown_installation_completes_with_nothing_targeted(hub: Hub) -> None:
    doc = hub.wait(hub.send({"installationId": "nobody"}))

    assert doc["targeted"] == 0
    assert doc["apps"] == []


def test_idempotency_key_accepts_a_retried_send_once(hub: Hub) -> None:
    channel = hub.register("i-1", hub.mail)
    payload = {"type": "toast", "body": "<toast/>"}
    ids = []
    for _ in range(2):
        resp = hub.api.post(f"/v1/hubs/{hub.name}/notifications",
                            json={"target": {"installationId": "i-1"}, "payload": payload},
                            headers={"Idempotency-Key": "order-42"})
        assert resp.status_code == 202
        ids.append(resp.json()["id"])

    assert ids[0] == ids[1]
    hub.wait(ids[0])
    assert len(hub.received(channel)) == 1

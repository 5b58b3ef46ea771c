"""Every malformed or hostile request gets a 4xx problem+json naming the field, and nothing is
half-written."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from common.cli.localstack import LocalStack
from tests.conftest import Hub, db_fetchval

GOOD_CHANNEL = "https://db5.notify.windows.com/?token=AwYAAAB%2bRk%3d"


def assert_problem(resp: httpx.Response, status: int, field: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/problem+json")
    doc = dict(resp.json())
    assert doc["status"] == status
    assert doc["field"] == field, doc
    assert doc["detail"]
    return doc


@pytest.mark.parametrize("channel", [
    "http://db5.notify.windows.com/?token=abc",                 # plain http
    "https://example.com/?token=abc",                           # another host
    "https://notify.windows.com.evil.example/?token=abc",       # suffix trick
    "https://evilnotify.windows.com/?token=abc",                # not on a dot boundary
    "https://user:pw@db5.notify.windows.com/?token=abc",        # userinfo
    "https://db5.notify.windows.com@evil.example/?token=abc",   # userinfo pointing elsewhere
    "https://10.0.0.7/?token=abc",                              # IP literal
    "https://[::1]/?token=abc",                                 # IPv6 literal
    "https://db5.notify.windows.com:8443/?token=abc",           # explicit port
    "https://db5.notify.windows.com:443/?token=abc",            # even the default one
    "https://DB5.NOTIFY.WINDOWS.COM/?token=abc",                # not as WNS issues them
    "https://db5.notify.windows.com./?token=abc",               # trailing dot
    "https://evil.example\\@db5.notify.windows.com/?token=abc",  # backslash confusion
    "https://db5.notify.windows.com/?token=a b",                # whitespace
    "https://db5.notify.windows.com/#frag",                     # fragment
    "notify.windows.com",                                       # not a URL
    "",
])
def test_channel_outside_the_wns_allowlist_is_refused_and_not_stored(hub: Hub, channel: str) -> None:
    resp = hub.api.put(f"/v1/hubs/{hub.name}/installations/dev", json={
        "installationId": "dev", "platform": "wns", "pushChannel": channel, "app": hub.mail})

    assert_problem(resp, 400, "pushChannel")
    assert hub.api.get(f"/v1/hubs/{hub.name}/installations/dev").status_code == 404


def test_a_refused_update_leaves_the_stored_installation_as_it_was(hub: Hub) -> None:
    channel = hub.register("keep", hub.mail, tags=["a"])

    resp = hub.api.put(f"/v1/hubs/{hub.name}/installations/keep", json={
        "installationId": "keep", "platform": "wns", "pushChannel": "https://evil.example/",
        "tags": ["b"], "app": hub.mail})

    assert_problem(resp, 400, "pushChannel")
    doc = hub.installation("keep")
    assert doc["pushChannel"] == channel and doc["tags"] == ["a"]


INSTALLATION = {"installationId": "dev", "platform": "wns", "pushChannel": GOOD_CHANNEL,
                "app": "contoso-mail"}


@pytest.mark.parametrize(("change", "field"), [
    ({"platform": "apns"}, "platform"),
    ({"installationId": "other"}, "installationId"),
    ({"installationId": "bad id/../x"}, "installationId"),
    ({"tags": "news"}, "tags"),
    ({"tags": ["ok", "no spaces"]}, "tags.1"),
    ({"tags": ["$InstallationId:{x}"]}, "tags.0"),
    ({"tags": [f"t{n}" for n in range(61)]}, "tags"),
    ({"userId": "a b"}, "userId"),
    ({"app": "no-such-app"}, "app"),
    ({"app": None}, "app"),
    ({"pushChannel": 42}, "pushChannel"),
    ({"templates": {"t": {"body": "x"}}}, "templates"),
])
def test_malformed_installation_fields_are_named(hub: Hub, change: dict[str, Any], field: str) -> None:
    body = {**INSTALLATION, **change}
    resp = hub.api.put(f"/v1/hubs/{hub.name}/installations/dev", json=body)

    assert_problem(resp, 400, field)


def _send(hub: Hub, body: Any) -> httpx.Response:
    return hub.api.post(f"/v1/hubs/{hub.name}/notifications", json=body)


TOAST = {"type": "toast", "body": "<toast/>"}


@pytest.mark.parametrize(("body", "field"), [
    ({"payload": TOAST}, "target"),
    ({"target": {}, "payload": TOAST}, "target"),
    ({"target": {"tag": "a", "everyone": True}, "payload": TOAST}, "target"),
    ({"target": {"tag": "bad tag"}, "payload": TOAST}, "target.tag"),
    ({"target": {"everyone": True}}, "payload"),
    ({"target": {"everyone": True}, "payload": {"type": "mail", "body": "x"}}, "payload.type"),
    ({"target": {"everyone": True}, "payload": {"type": "toast", "body": "x" * 5001}},
     "payload.body"),
    ({"target": {"everyone": True}, "payload": {"type": "raw", "body": ""}}, "payload.body"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"x-wns-ttl": "soon"}}}, "payload.headers.X-WNS-TTL"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"Authorization": "Bearer x"}}},
     "payload.headers.Authorization"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-Type": "wns/raw"}}}, "payload.headers.X-WNS-Type"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-PRIORITY": "5"}}}, "payload.headers.X-WNS-PRIORITY"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-Tag": "seventeen-chars-x"}}}, "payload.headers.X-WNS-Tag"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-Group": "a-b"}}}, "payload.headers.X-WNS-Group"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-Cache-Policy": "maybe"}}},
     "payload.headers.X-WNS-Cache-Policy"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-SuppressPopup": "yes"}}},
     "payload.headers.X-WNS-SuppressPopup"),
    ({"target": {"everyone": True},
      "payload": {**TOAST, "headers": {"X-WNS-RequestForStatus": "1"}}},
     "payload.headers.X-WNS-RequestForStatus"),
    ({"target": {"everyone": True}, "payload": TOAST, "apps": ["nope"]}, "apps"),
    ({"target": {"everyone": True}, "payload": TOAST, "extra": 1}, "extra"),
])
def test_malformed_sends_are_refused_before_anything_is_queued(
    stack: LocalStack, hub: Hub, body: dict[str, Any], field: str
) -> None:
    before = db_fetchval(stack.database_url, "SELECT count(*) FROM notifications")

    assert_problem(_send(hub, body), 400, field)

    assert db_fetchval(stack.database_url, "SELECT count(*) FROM notifications") == before


def test_a_5000_byte_payload_is_accepted_and_delivered(hub: Hub) -> None:
    channel = hub.register("big", hub.mail)
    body = "<toast>" + "x" * (5000 - len("<toast></toast>")) + "</toast>"

    doc = hub.wait(hub.send({"installationId": "big"}, body))

    assert doc["outcomes"]["delivered"] == 1
    assert hub.received(channel)[0]["body"] == body


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b"null", b""])
def test_bodies_that_are_not_a_json_object_get_400(hub: Hub, raw: bytes) -> None:
    resp = hub.api.put(f"/v1/hubs/{hub.name}/installations/dev", content=raw,
                       headers={"Content-Type": "application/json"})

    assert_problem(resp, 400, "body")


def test_wrong_content_type_gets_415(hub: Hub) -> None:
    resp = hub.api.post(f"/v1/hubs/{hub.name}/notifications", content=b"target=all",
                        headers={"Content-Type": "application/x-www-form-urlencoded"})

    assert_problem(resp, 415, "Content-Type")


def test_unknown_routes_and_ids_are_problem_404s(hub: Hub) -> None:
    for path in (f"/v1/hubs/{hub.name}/notifications/not-a-uuid",
                 f"/v1/hubs/{hub.name}/notifications/00000000-0000-0000-0000-000000000000",
                 f"/v1/hubs/{hub.name}/installations/nobody", "/v1/nothing-here"):
        resp = hub.api.get(path)
        assert resp.status_code == 404, path
        assert resp.headers["Content-Type"].startswith("application/problem+json")


def test_oversized_request_is_refused_with_413(hub: Hub) -> None:
    resp = hub.api.put(f"/v1/hubs/{hub.name}/installations/dev",
                       content=b'{"x": "' + b"a" * 300_000 + b'"}',
                       headers={"Content-Type": "application/json"})

    assert resp.status_code == 413


@pytest.mark.parametrize(("method", "path", "body", "status", "field"), [
    ("GET", "/installations/%00", None, 404, "installationId"),
    ("DELETE", "/installations/a%00b", None, 404, "installationId"),
    ("GET", "/installations/" + "a" * 5000, None, 404, "installationId"),
    ("GET", "/apps/%00", None, 404, "app"),
    ("DELETE", "/keys/%00", None, 404, "key"),
    ("GET", "/notifications/%00", None, 404, "notification"),
    ("POST", "/notifications",
     {"target": {"everyone": True}, "payload": {"type": "toast", "body": "a\x00b"}}, 400,
     "payload.body"),
    ("POST", "/keys", {"name": "a\x00b", "rights": ["send"]}, 400, "name"),
    ("PUT", "/apps/x", {"childUrl": "http://a\x00b"}, 400, "childUrl"),
    ("PUT", "/installations/dev", {**INSTALLATION, "tags": ["ok"], "\x00": 1}, 400, "\x00"),
])
def test_nul_characters_and_odd_path_segments_never_reach_the_database(
    hub: Hub, method: str, path: str, body: dict[str, Any] | None, status: int, field: str
) -> None:
    resp = hub.api.request(method, f"/v1/hubs/{hub.name}{path}", json=body)

    assert_problem(resp, status, field)


def test_a_hub_name_no_hub_can_have_is_refused_like_an_unknown_hub(stack: LocalStack, hub: Hub) -> None:
    assert hub.api.get("/v1/hubs/de%00mo/installations/x").status_code == 403
    with stack.operator() as operator:
        assert_problem(operator.get("/v1/hubs/de%00mo/installations/x"), 404, "hub")

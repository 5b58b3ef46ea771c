"""Keys and rights on the parent; signatures on the child."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from common.cli.localstack import LocalStack
from common.signing import sign
from common.wire import BATCH_PATH
from tests.conftest import Hub
from tests.test_bad_input import GOOD_CHANNEL


def _as(hub: Hub, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.Client(base_url=hub.stack.parent_url, headers=headers, timeout=30)


def _install(hub: Hub, client: httpx.Client, app: str | None, installation_id: str = "dev"
             ) -> httpx.Response:
    body = {"installationId": installation_id, "platform": "wns", "pushChannel": GOOD_CHANNEL}
    if app:
        body["app"] = app
    return client.put(f"/v1/hubs/{hub.name}/installations/{installation_id}", json=body)


@pytest.mark.parametrize("authorization", [
    None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer garbage", "Bearer tk_0000000000000000.nope",
])
def test_missing_or_unknown_key_is_401(hub: Hub, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    resp = httpx.get(f"{hub.stack.parent_url}/v1/hubs/{hub.name}/installations/x", headers=headers)
    assert resp.status_code == 401
    assert resp.json()["field"] == "Authorization"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_right_secret_of_another_key_is_401(hub: Hub) -> None:
    key_id = hub.keys["full"].split(".")[0]
    other_secret = hub.keys[f"listen:{hub.mail}"].split(".")[1]
    with _as(hub, f"{key_id}.{other_secret}") as client:
        assert client.get(f"/v1/hubs/{hub.name}/installations/x").status_code == 401


def test_listen_key_cannot_send_or_manage(hub: Hub) -> None:
    with _as(hub, hub.keys[f"listen:{hub.mail}"]) as client:
        send = client.post(f"/v1/hubs/{hub.name}/notifications",
                           json={"target": {"everyone": True},
                                 "payload": {"type": "toast", "body": "<toast/>"}})
        manage = client.get(f"/v1/hubs/{hub.name}/apps")
    assert send.status_code == 403 and send.json()["field"] == "Authorization"
    assert manage.status_code == 403


def test_send_only_key_cannot_register(hub: Hub) -> None:
    key = hub.api.post(f"/v1/hubs/{hub.name}/keys",
                       json={"name": "backend", "rights": ["send"]}).json()["key"]
    with _as(hub, key) as client:
        assert _install(hub, client, hub.mail).status_code == 403
        ok = client.post(f"/v1/hubs/{hub.name}/notifications",
                         json={"target": {"everyone": True},
                               "payload": {"type": "toast", "body": "<toast/>"}})
        assert ok.status_code == 202


def test_app_scoped_listen_key_registers_only_its_own_app(hub: Hub) -> None:
    with _as(hub, hub.keys[f"listen:{hub.mail}"]) as client:
        assert _install(hub, client, None, "mine").status_code == 200  # app implied by key
        other = _install(hub, client, hub.news, "theirs")
        assert other.status_code == 403 and other.json()["field"] == "app"
    assert hub.installation("mine")["app"] == hub.mail
    # An installation id taken by another app cannot be hijacked through an app-scoped key.
    hub.register("shared", hub.news)
    with _as(hub, hub.keys[f"listen:{hub.mail}"]) as client:
        assert _install(hub, client, None, "shared").status_code == 403
        assert client.get(f"/v1/hubs/{hub.name}/installations/shared").status_code == 404
    assert hub.installation("shared")["app"] == hub.news


def test_key_of_one_hub_is_refused_on_another(stack: LocalStack, hub: Hub) -> None:
    other = Hub(stack)
    with _as(hub, other.keys["full"]) as client:
        assert client.get(f"/v1/hubs/{hub.name}/installations/x").status_code == 403
        assert client.get("/v1/hubs/no-such-hub/installations/x").status_code == 403


def test_revoked_key_stops_working(hub: Hub) -> None:
    created = hub.api.post(f"/v1/hubs/{hub.name}/keys",
                           json={"name": "temp", "rights": ["listen"], "app": hub.mail}).json()
    with _as(hub, created["key"]) as client:
        assert _install(hub, client, None).status_code == 200
        assert hub.api.delete(f"/v1/hubs/{hub.name}/keys/{created['id']}").status_code == 204
        assert _install(hub, client, None).status_code == 401
    listed = hub.api.get(f"/v1/hubs/{hub.name}/keys").json()["keys"]
    assert {k["id"]: k["revoked"] for k in listed}[created["id"]] is True
    assert all("key" not in k for k in listed)  # secrets are shown once, at creation


def test_only_the_operator_creates_hubs(hub: Hub) -> None:
    resp = hub.api.post("/v1/hubs", json={"name": "sneaky"})
    assert resp.status_code == 403
    with hub.stack.operator() as operator:
        assert operator.post("/v1/hubs", json={"name": hub.name}).status_code == 409


# -- child signatures -------------------------------------------------------------------------


def _batch(app: str) -> bytes:
    return json.dumps({"batch_id": "b1", "app": app,
                       "payloads": [{"type": "toast", "body": "<toast/>"}],
                       "items": []}).encode()


def _post_child(stack: LocalStack, app: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(stack.child_url(app) + BATCH_PATH, content=body,
                      headers={"Content-Type": "application/json", **headers})


def _signing(stack: LocalStack, app: str) -> tuple[str, bytes]:
    assert stack.secrets is not None
    creds = stack.secrets.app(app)
    return creds["signing_key_id"], creds["signing_key"].encode()


def test_child_accepts_only_requests_signed_with_its_key(stack: LocalStack) -> None:
    app = stack.config.apps[0].name
    key_id, key = _signing(stack, app)
    body = _batch(app)
    good = sign(key_id, key, "POST", BATCH_PATH, body)

    assert _post_child(stack, app, body, good).status_code == 200
    replayed = _post_child(stack, app, body, good)
    assert replayed.status_code == 409 and replayed.json()["code"] == "replayed"
    refused = {
        "unsigned": _post_child(stack, app, body, {}),
        "wrong key": _post_child(stack, app, body,
                                 sign(key_id, b"x" * 32, "POST", BATCH_PATH, body)),
        "unknown key id": _post_child(stack, app, body,
                                      sign("sk_other", key, "POST", BATCH_PATH, body)),
        "tampered body": _post_child(stack, app, body.replace(b"b1", b"b2"), good),
        "stale": _post_child(stack, app, body,
                             sign(key_id, key, "POST", BATCH_PATH, body, now=time.time() - 3600)),
        "other app's key": _post_child(stack, app, body,
                                       sign(*_signing(stack, stack.config.apps[1].name),
                                            "POST", BATCH_PATH, body)),
    }
    for case, resp in refused.items():
        assert resp.status_code == 401, case
        assert resp.headers["Content-Type"].startswith("application/problem+json"), case


def test_child_refuses_a_signed_batch_for_another_app(stack: LocalStack) -> None:
    app, other = (a.name for a in stack.config.apps)
    body = _batch(other)
    resp = _post_child(stack, app, body, sign(*_signing(stack, app), "POST", BATCH_PATH, body))
    assert resp.status_code == 409
    assert resp.json()["field"] == "app"


def test_child_rechecks_channel_uris_and_never_posts_outside_wns(stack: LocalStack) -> None:
    app = stack.config.apps[0].name
    body = json.dumps({"batch_id": "b2", "app": app,
                       "payloads": [{"type": "toast", "body": "<toast/>"}],
                       "items": [{"id": "1", "channel": f"http://127.0.0.1:{stack.config.parent_port}/"},
                                 {"id": "2", "channel": "https://notify.windows.com.evil.example/"}]
                       }).encode()
    resp = _post_child(stack, app, body, sign(*_signing(stack, app), "POST", BATCH_PATH, body))
    assert resp.status_code == 200
    assert [r["outcome"] for r in resp.json()["results"]] == ["rejected", "rejected"]

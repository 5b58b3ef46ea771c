"""A 202 is durable: real parent processes killed with SIGKILL lose nothing."""

from __future__ import annotations

import signal
import time

from common.cli.localstack import LocalStack
from tests.conftest import Hub


def _restart_parent(stack: LocalStack, **env: str) -> None:
    stack.stop_process("parent", signal.SIGKILL)
    stack.start_parent(**env)


def test_notification_accepted_then_parent_killed_is_delivered_after_restart(
    stack: LocalStack, hub: Hub
) -> None:
    channel = hub.register("crash-1", hub.mail)
    # An API-only parent accepts but cannot dispatch, so the kill surely comes before delivery.
    _restart_parent(stack, TOCSIN_DISPATCH_WORKERS="0")

    notification_id = hub.send({"installationId": "crash-1"})
    stack.stop_process("parent", signal.SIGKILL)
    assert hub.received(channel) == []

    stack.start_parent()
    doc = hub.wait(notification_id)

    assert doc["outcomes"]["delivered"] == 1
    assert len(hub.received(channel)) == 1


def test_parent_killed_mid_broadcast_still_reaches_every_channel(stack: LocalStack, hub: Hub) -> None:
    channels = [hub.register(f"crash-b{n}", (hub.mail, hub.news)[n % 2]) for n in range(40)]
    _restart_parent(stack, TOCSIN_BATCH_SIZE="5")

    notification_id = hub.send({"everyone": True})
    stack.stop_process("parent", signal.SIGKILL)  # right after the 202, wherever dispatch is
    stack.start_parent(TOCSIN_BATCH_SIZE="5")
    doc = hub.wait(notification_id, timeout=60)

    # At least once to every channel; counts add up to the targets whatever was redone.
    assert doc["targeted"] == 40
    assert doc["outcomes"]["delivered"] == 40
    assert all(len(hub.received(c)) >= 1 for c in channels)
    # Duplicates are bounded by the batches in flight when the parent died (2 workers x 5).
    assert sum(len(hub.received(c)) for c in channels) <= 40 + 10


def test_a_send_waits_out_a_child_outage(stack: LocalStack, hub: Hub) -> None:
    channel = hub.register("outage-1", hub.news)
    stack.stop_process(f"child-{hub.news}")
    try:
        notification_id = hub.send({"installationId": "outage-1"})
        deadline = time.monotonic() + 20
        while not (doc := hub.notification(notification_id))["apps"][0]["lastError"]:
            assert time.monotonic() < deadline, doc
            time.sleep(0.1)
        assert doc["state"] == "dispatching"
        assert "child unreachable" in doc["apps"][0]["lastError"]
    finally:
        stack.start_child(hub.news)

    doc = hub.wait(notification_id)

    assert doc["outcomes"]["delivered"] == 1
    assert len(hub.received(channel)) == 1

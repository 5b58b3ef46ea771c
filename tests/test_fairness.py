"""A one-device send is not stuck behind a large broadcast: dispatch gives work back to the queue
after every batch, so the small send is picked up at the next free slot."""

from __future__ import annotations

import pytest

from tests.conftest import Hub


@pytest.fixture(scope="module")
def parent_env() -> dict[str, str]:
    return {"TOCSIN_BATCH_SIZE": "2"}


def test_a_single_send_overtakes_a_broadcast_in_progress(hub: Hub) -> None:
    for n in range(60):
        hub.register(f"f-{n}", (hub.mail, hub.news)[n % 2])
    single = hub.register("f-single", hub.mail)
    hub.emulator.post("/control/latency", json={"minSeconds": 0.05, "maxSeconds": 0.05})
    try:
        broadcast_id = hub.send({"everyone": True})  # 61 targets in about 31 batches
        single_id = hub.send({"installationId": "f-single"})
        single_doc = hub.wait(single_id)
        broadcast_doc = hub.notification(broadcast_id)
        assert broadcast_doc["state"] == "dispatching"  # still far from done
        broadcast_doc = hub.wait(broadcast_id, timeout=60)
    finally:
        hub.emulator.post("/control/latency", json={"minSeconds": 0, "maxSeconds": 0})

    assert single_doc["outcomes"]["delivered"] == 1
    assert broadcast_doc["outcomes"]["delivered"] == 61
    assert len(hub.received(single)) == 2  # once alone, once in the broadcast

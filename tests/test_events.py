import trio

from backupd.events import MAX_PENDING, EventHub, SubscriberOverflow


async def test_a_slow_subscriber_gets_only_the_newest_progress_but_every_other_event():
    hub = EventHub()
    subscriber = hub.subscribe()
    hub.publish("job.started", {"id": "1"})
    for files in range(100):
        hub.publish("job.progress", {"id": "1", "files": files})
    hub.publish("job.finished", {"id": "1", "state": "succeeded"})
    batch = await subscriber.next_batch()
    assert [(n.method, n.params.get("files")) for n in batch] == [
        ("job.started", None),
        ("job.progress", 99),
        ("job.finished", None),
    ]


async def test_next_batch_waits_for_a_publication():
    hub = EventHub()
    subscriber = hub.subscribe()
    async with trio.open_nursery() as nursery:
        received = []

        async def receive():
            received.extend(await subscriber.next_batch())

        nursery.start_soon(receive)
        await trio.sleep(0.01)
        assert received == []
        hub.publish("status.changed", {"state": "idle"})
    assert [n.method for n in received] == ["status.changed"]


async def test_unsubscribed_and_closed_subscribers_get_nothing_more():
    hub = EventHub()
    subscriber = hub.subscribe()
    hub.unsubscribe(subscriber)
    hub.publish("status.changed", {})
    subscriber.close()
    assert await subscriber.next_batch() == []


async def test_a_subscriber_that_never_reads_overflows_instead_of_growing_forever():
    hub = EventHub()
    subscriber = hub.subscribe()
    for _ in range(MAX_PENDING + 1):
        hub.publish("status.changed", {})
    try:
        await subscriber.next_batch()
    except SubscriberOverflow:
        return
    raise AssertionError("expected SubscriberOverflow")

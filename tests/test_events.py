import trio

from backupd.events import Change, Changes, MAX_PENDING, EventHub, SubscriberOverflow


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


async def test_a_slow_subscriber_gets_the_newest_overview_in_the_place_of_its_latest_publication():
    hub = EventHub()
    subscriber = hub.subscribe()
    hub.publish("status.changed", {"state": "idle"})
    hub.publish("job.started", {"id": "1"})
    hub.publish("status.changed", {"state": "running"})
    hub.publish("job.progress", {"id": "1", "files": 1})
    hub.publish("job.started", {"id": "2"})
    hub.publish("job.progress", {"id": "2", "files": 7})
    hub.publish("job.progress", {"id": "1", "files": 2})
    hub.publish("job.finished", {"id": "1"})
    hub.publish("status.changed", {"state": "idle", "snapshot_count": 1})
    batch = await subscriber.next_batch()
    assert [(n.method, n.params) for n in batch] == [
        ("job.started", {"id": "1"}),
        ("job.started", {"id": "2"}),
        ("job.progress", {"id": "2", "files": 7}),
        ("job.progress", {"id": "1", "files": 2}),
        ("job.finished", {"id": "1"}),
        ("status.changed", {"state": "idle", "snapshot_count": 1}),
    ]


async def test_a_subscriber_that_never_reads_keeps_one_overview_and_one_progress_per_job():
    hub = EventHub()
    subscriber = hub.subscribe()
    for step in range(3 * MAX_PENDING):
        hub.publish("status.changed", {"step": step})
        hub.publish("job.progress", {"id": "1", "files": step})
    hub.publish("job.finished", {"id": "1"})
    batch = await subscriber.next_batch()
    assert [n.method for n in batch] == ["status.changed", "job.progress", "job.finished"]
    assert batch[0].params == {"step": 3 * MAX_PENDING - 1}


async def test_a_subscriber_that_leaves_too_many_jobs_unread_overflows_instead_of_growing_forever():
    hub = EventHub()
    subscriber = hub.subscribe()
    for job in range(MAX_PENDING // 2):
        hub.publish("job.started", {"id": str(job)})
        hub.publish("status.changed", {})
        hub.publish("job.finished", {"id": str(job)})
    hub.publish("job.started", {"id": "last"})
    try:
        await subscriber.next_batch()
    except SubscriberOverflow:
        return
    raise AssertionError("expected SubscriberOverflow")


def test_changes_reach_each_listener_at_once_in_the_order_they_began_listening():
    changes = Changes()
    heard: list[tuple[str, object]] = []
    changes.on(Change.JOB_FINISHED, lambda job: heard.append(("notices", job)))
    changes.on(Change.CONFIG, lambda _: heard.append(("scheduler re-plans", None)))
    changes.on(Change.JOB_FINISHED, lambda job: heard.append(("scheduler wakes", job)))
    changes.tell(Change.JOB_FINISHED, "job 7")
    changes.tell(Change.STATUS)
    changes.tell(Change.CONFIG)
    assert heard == [("notices", "job 7"), ("scheduler wakes", "job 7"), ("scheduler re-plans", None)]

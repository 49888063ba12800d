"""`status` calls per second from many connections, spread over several client processes
so that the clients' own interpreter lock is not what is measured."""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import msgpack

STATUS_REQUEST = msgpack.packb([0, 1, "status", []])
RECEIVE_SIZE = 64 * 1024
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class WorkerCount:
    calls: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


@dataclass(frozen=True)
class ThroughputFigures:
    workers: list[WorkerCount]
    connections_per_process: int
    seconds: float

    @property
    def calls(self) -> int:
        return sum(worker.calls for worker in self.workers)

    @property
    def calls_per_second(self) -> float:
        return sum(worker.rate for worker in self.workers)

    @property
    def connections(self) -> int:
        return len(self.workers) * self.connections_per_process


def measure_status_throughput(socket_path: Path, processes: int, connections_per_process: int,
                              seconds: float) -> ThroughputFigures:
    context = multiprocessing.get_context("fork")
    start_together = context.Barrier(processes + 1)
    counts: Queue[WorkerCount | str] = context.Queue()
    workers = [
        context.Process(target=_status_worker,
                        args=(str(socket_path), connections_per_process, seconds, start_together, counts))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    start_together.wait(timeout=START_TIMEOUT)
    results = [counts.get(timeout=seconds + START_TIMEOUT) for _ in workers]
    for worker in workers:
        worker.join()
    failures = [result for result in results if isinstance(result, str)]
    if failures:
        raise RuntimeError(f"a throughput client failed: {failures[0]}")
    counted = [result for result in results if isinstance(result, WorkerCount)]
    return ThroughputFigures(workers=counted, connections_per_process=connections_per_process, seconds=seconds)


def _status_worker(socket_path: str, connection_count: int, seconds: float, start_together: Barrier,
                   counts: Queue[WorkerCount | str]) -> None:
    try:
        counts.put(_call_status_in_a_loop(socket_path, connection_count, seconds, start_together))
    except Exception as error:
        counts.put(f"{type(error).__name__}: {error}")


def _call_status_in_a_loop(socket_path: str, connection_count: int, seconds: float,
                           start_together: Barrier) -> WorkerCount:
    """Each connection keeps one status call in flight: a new one as soon as the last is answered."""
    selector = selectors.DefaultSelector()
    connections = [_connect(socket_path) for _ in range(connection_count)]
    for connection in connections:
        selector.register(connection, selectors.EVENT_READ, (connection, msgpack.Unpacker(raw=False)))
    start_together.wait(timeout=START_TIMEOUT)
    started = time.perf_counter()
    deadline = started + seconds
    for connection in connections:
        connection.send(STATUS_REQUEST)
    calls = 0
    while (now := time.perf_counter()) < deadline:
        for key, _ in selector.select(deadline - now):
            calls += _answer_responses(*key.data)
    elapsed = time.perf_counter() - started
    selector.close()
    for connection in connections:
        connection.close()
    return WorkerCount(calls=calls, seconds=elapsed)


def _connect(socket_path: str) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(socket_path)
    connection.setblocking(False)
    return connection


def _answer_responses(connection: socket.socket, unpacker: msgpack.Unpacker) -> int:
    """Read what arrived; for each response, send the next request. The count of responses."""
    data = connection.recv(RECEIVE_SIZE)
    if not data:
        raise RuntimeError("the daemon closed a connection")
    unpacker.feed(data)
    responses = 0
    for response in unpacker:
        if response[2] is not None:
            raise RuntimeError(f"status failed: {response[2]}")
        responses += 1
        connection.send(STATUS_REQUEST)
    return responses

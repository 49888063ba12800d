"""`status` from many connections at once, each with one call in flight: calls per second and round trips.

The connections are spread over several client processes so that the clients' own
interpreter lock is not what is measured. They call against the idle daemon for a fixed
time, and while snapshots run (with raw borg beside the idle daemon as the control).
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from types import TracebackType

import msgpack

from bench.background import BackgroundSnapshot, SnapshotComparison, compare_under_snapshots
from bench.daemon import BenchDaemon
from bench.dataset import Dataset
from bench.raw_borg import RawBorg
from bench.samples import LatencySamples, LoadSamples, Window, wall_clock_offset
from bench.workspace import Workspace

STATUS_REQUEST = msgpack.packb([0, 1, "status", []])
RECEIVE_SIZE = 64 * 1024
START_TIMEOUT = 30.0
RESULT_TIMEOUT = 60.0
# How often a client process looks whether it has been told to stop, and the parent whether a snapshot still runs.
STOP_CHECK_SECONDS = 0.01


@dataclass(frozen=True)
class ClientSpread:
    processes: int
    connections_per_process: int

    @property
    def connections(self) -> int:
        return self.processes * self.connections_per_process


def measure_many_clients_idle(socket_path: Path, spread: ClientSpread, seconds: float) -> LoadSamples:
    """Calls per second and round trips against the idle daemon: DESIGN's throughput budget."""
    load = LoadSamples()
    with StatusLoad(socket_path, spread) as clients:
        started = time.time()
        clients.begin()
        time.sleep(seconds)
        samples = clients.stop()
    load.add(samples, Window(started, started + seconds))
    return load


def measure_many_clients_during_snapshots(workspace: Workspace, daemon: BenchDaemon, raw: RawBorg, dataset: Dataset,
                                          spread: ClientSpread, runs: int) -> SnapshotComparison:
    def load_while_running(background: BackgroundSnapshot) -> LatencySamples:
        with StatusLoad(daemon.socket, spread) as clients:
            clients.begin()
            background.start()
            while background.running():
                time.sleep(STOP_CHECK_SECONDS)
            return clients.stop()

    return compare_under_snapshots(workspace, daemon, raw, dataset, "many-clients", load_while_running,
                                   runs_at_most=runs)


class StatusLoad:
    """Client processes, connected and waiting on entry; `begin` sets them calling, `stop` collects their calls."""

    def __init__(self, socket_path: Path, spread: ClientSpread) -> None:
        context = multiprocessing.get_context("fork")
        self._start_together = context.Barrier(spread.processes + 1)
        self._stop = context.Event()
        self._results: Queue[LatencySamples | str] = context.Queue()
        self._workers = [
            context.Process(target=_status_worker,
                            args=(str(socket_path), spread.connections_per_process, self._start_together,
                                  self._stop, self._results))
            for _ in range(spread.processes)
        ]

    def __enter__(self) -> StatusLoad:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._start_together.abort()
        for worker in self._workers:
            worker.join(timeout=START_TIMEOUT)
            if worker.is_alive():
                worker.kill()
                worker.join()

    def begin(self) -> None:
        self._start_together.wait(timeout=START_TIMEOUT)

    def stop(self) -> LatencySamples:
        self._stop.set()
        results = [self._results.get(timeout=RESULT_TIMEOUT) for _ in self._workers]
        failures = [result for result in results if isinstance(result, str)]
        if failures:
            raise RuntimeError(f"a status client failed: {failures[0]}")
        samples = LatencySamples()
        for result in results:
            assert isinstance(result, LatencySamples)
            samples.extend(result)
        return samples


def _status_worker(socket_path: str, connection_count: int, start_together: Barrier, stop: Event,
                   results: Queue[LatencySamples | str]) -> None:
    try:
        results.put(_call_status_until_stopped(socket_path, connection_count, start_together, stop))
    except Exception as error:
        results.put(f"{type(error).__name__}: {error}")


@dataclass
class _Connection:
    sock: socket.socket
    unpacker: msgpack.Unpacker
    sent_at: float = 0.0

    def send_status(self) -> None:
        self.sent_at = time.perf_counter()
        self.sock.send(STATUS_REQUEST)


def _call_status_until_stopped(socket_path: str, connection_count: int, start_together: Barrier,
                               stop: Event) -> LatencySamples:
    """Each connection keeps one status call in flight: a new one as soon as the last is answered."""
    selector = selectors.DefaultSelector()
    connections = [_Connection(_connect(socket_path), msgpack.Unpacker(raw=False)) for _ in range(connection_count)]
    for connection in connections:
        selector.register(connection.sock, selectors.EVENT_READ, connection)
    start_together.wait(timeout=START_TIMEOUT)
    offset = wall_clock_offset()
    samples = LatencySamples()
    for connection in connections:
        connection.send_status()
    next_stop_check = time.perf_counter() + STOP_CHECK_SECONDS
    while True:
        for key, _ in selector.select(STOP_CHECK_SECONDS):
            _answer_responses(key.data, samples, offset)
        if time.perf_counter() >= next_stop_check:
            if stop.is_set():
                break
            next_stop_check = time.perf_counter() + STOP_CHECK_SECONDS
    selector.close()
    for connection in connections:
        connection.sock.close()
    return samples


def _connect(socket_path: str) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(socket_path)
    connection.setblocking(False)
    return connection


def _answer_responses(connection: _Connection, samples: LatencySamples, offset: float) -> None:
    """Read what arrived; time each response and send the next request."""
    data = connection.sock.recv(RECEIVE_SIZE)
    if not data:
        raise RuntimeError("the daemon closed a connection")
    answered = time.perf_counter()
    connection.unpacker.feed(data)
    for response in connection.unpacker:
        if response[2] is not None:
            raise RuntimeError(f"status failed: {response[2]}")
        samples.add(connection.sent_at + offset, answered - connection.sent_at)
        connection.send_status()

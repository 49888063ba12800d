"""One load process: some connections poll `status`, the others subscribe and read every
notification. Prints a JSON summary: calls, errors, latencies, notifications."""

from __future__ import annotations

import json
import sys
import threading
import time

from backupctl.client import Client


def poll(socket: str, until: float, rate: float, latencies: list[float], errors: list[str]) -> None:
    try:
        with Client(socket, timeout=30) as client:
            while time.monotonic() < until:
                started = time.perf_counter()
                client.call("status")
                latencies.append(time.perf_counter() - started)
                time.sleep(max(0.0, 1 / rate - (time.perf_counter() - started)))
    except Exception as error:
        errors.append(repr(error))


def subscribe(socket: str, until: float, counts: dict[str, int], errors: list[str]) -> None:
    try:
        with Client(socket, timeout=5) as client:
            client.call("subscribe")
            while time.monotonic() < until:
                try:
                    for event in client.events():
                        counts[event.method] = counts.get(event.method, 0) + 1
                        if time.monotonic() >= until:
                            break
                    else:
                        errors.append("the daemon closed a subscription")
                        return
                except TimeoutError:
                    continue
    except Exception as error:
        errors.append(repr(error))


def main() -> None:
    socket, connections, seconds, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    until = time.monotonic() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    counts: dict[str, int] = {}
    threads = []
    for index in range(connections):
        if index % 2:
            thread = threading.Thread(target=subscribe, args=(socket, until, counts, errors))
        else:
            thread = threading.Thread(target=poll, args=(socket, until, rate, latencies, errors))
        threads.append(thread)
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"latencies": latencies, "errors": errors, "notifications": counts}))


if __name__ == "__main__":
    main()

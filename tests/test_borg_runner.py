import dataclasses
import os
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import trio

from backupctl.protocol import ErrorCode
from backupd.borg import commands
from backupd.borg.commands import BorgCommand
from backupd.borg.errors import BorgFailed
from backupd.borg.log_json import (
    ArchiveProgress,
    BorgEvent,
    FileStatus,
    ListedItem,
    ListedItems,
    LogMessage,
    ProgressMessage,
    ProgressPercent,
)
from backupd.borg.runner import run_borg

BORG = (sys.executable, "-m", "borg")
PASSPHRASE = "pw-7f3a correct horse ✓ battery"


@pytest.fixture
def borg_env(tmp_path: Path) -> dict[str, str]:
    return {"BORG_BASE_DIR": str(tmp_path / "borg-base")}


@pytest.fixture
def source_tree(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    (source / "docs").mkdir(parents=True)
    (source / "docs" / "letter.txt").write_text("dear borg\n" * 100)
    (source / "photo.bin").write_bytes(os.urandom(200_000))
    (source / "empty").write_bytes(b"")
    return source


@pytest.fixture
async def repository(tmp_path: Path, borg_env: dict[str, str]) -> str:
    location = str(tmp_path / "repo")
    with trio.fail_after(20):
        await run_borg(commands.init(location, "repokey-blake2"), borg=BORG, passphrase=PASSPHRASE, env=borg_env)
    return location


def with_read_special(command: BorgCommand) -> BorgCommand:
    """Read FIFOs as file contents, so a test controls how fast (or whether) data arrives."""
    end_of_options = command.args.index("--")
    args = (*command.args[:end_of_options], "--read-special", *command.args[end_of_options:])
    return dataclasses.replace(command, args=args)


class FifoFeeder:
    """Writes random data into a FIFO from a thread, at a chosen pace, until told to stop."""

    def __init__(self, path: Path) -> None:
        os.mkfifo(path)
        self.path = path
        self._stop = threading.Event()

    def feed(self, total_bytes: int | None, chunk_bytes: int, pause: float) -> None:
        try:
            with open(self.path, "wb", buffering=0) as fifo:
                sent = 0
                while not self._stop.is_set() and (total_bytes is None or sent < total_bytes):
                    fifo.write(os.urandom(chunk_bytes))
                    sent += chunk_bytes
                    time.sleep(pause)
        except BrokenPipeError:
            pass

    async def run(self, total_bytes: int | None, chunk_bytes: int, pause: float) -> None:
        await trio.to_thread.run_sync(self.feed, total_bytes, chunk_bytes, pause, abandon_on_cancel=True)

    def release(self) -> None:
        self._stop.set()
        try:  # a writer still waiting in open() for a reader gets one, and then a broken pipe
            os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
        except OSError:
            pass


def python_script(tmp_path: Path, name: str, source: str) -> tuple[str, ...]:
    script = tmp_path / name
    script.write_text(textwrap.dedent(source))
    return (sys.executable, str(script))


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_init_and_create_report_archive_and_cache_stats(
    repository: str, source_tree: Path, borg_env: dict[str, str]
) -> None:
    with trio.fail_after(20):
        result = await run_borg(
            commands.create(repository, "first", [str(source_tree)]), borg=BORG, passphrase=PASSPHRASE, env=borg_env
        )
    assert result.exit_code == 0
    archive = result.json["archive"]
    assert archive["name"] == "first"
    assert archive["stats"]["nfiles"] == 3
    assert archive["stats"]["original_size"] >= 201_000
    assert set(archive["stats"]) == {"original_size", "compressed_size", "deduplicated_size", "nfiles"}
    assert {"id", "start", "end", "duration"} <= set(archive)
    cache = result.json["cache"]["stats"]
    assert cache["unique_csize"] >= archive["stats"]["deduplicated_size"] > 0
    assert {"total_chunks", "total_unique_chunks", "total_size", "total_csize", "unique_size"} <= set(cache)
    assert result.json["encryption"]["mode"] == "repokey-blake2"


async def test_create_streams_archive_progress_while_borg_runs(
    repository: str, tmp_path: Path, borg_env: dict[str, str]
) -> None:
    feeder = FifoFeeder(tmp_path / "stream")
    events: list[tuple[float, BorgEvent]] = []
    command = with_read_special(commands.create(repository, "streamed", [str(feeder.path)]))
    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(feeder.run, 8 * 2**20, 2**18, 0.025)
            with trio.fail_after(20):
                result = await run_borg(
                    command,
                    borg=BORG,
                    passphrase=PASSPHRASE,
                    env=borg_env,
                    on_event=lambda event: events.append((trio.current_time(), event)),
                )
            finished_at = trio.current_time()
        finally:
            feeder.release()
    progress = [(at, event) for at, event in events if isinstance(event, ArchiveProgress)]
    running = [(at, event) for at, event in progress if not event.finished]
    assert len(running) >= 2
    sizes = [event.original_size for _, event in running]
    assert sizes == sorted(sizes) and sizes[-1] > 0
    first_with_data = next(at for at, event in running if event.original_size)
    assert finished_at - first_with_data > 0.2
    assert progress[-1][1].finished and progress[-1][1].original_size is None
    assert any(isinstance(event, ProgressMessage) and event.msgid == "cache.commit" for _, event in events)
    assert result.json["archive"]["stats"]["original_size"] == 8 * 2**20


async def test_list_archives_and_info_latest(repository: str, source_tree: Path, borg_env: dict[str, str]) -> None:
    run = dict(borg=BORG, passphrase=PASSPHRASE, env=borg_env)
    with trio.fail_after(30):
        await run_borg(commands.create(repository, "box-1", [str(source_tree)]), **run)
        (source_tree / "new.txt").write_text("more")
        await run_borg(commands.create(repository, "other-{x}", [str(source_tree)]), **run)
        listed = await run_borg(commands.list_archives(repository), **run)
        latest = await run_borg(commands.info_latest(repository), **run)
    assert [archive["name"] for archive in listed.json["archives"]] == ["box-1", "other-{x}"]
    assert {"name", "id", "start", "time"} <= set(listed.json["archives"][0])
    assert listed.json["repository"]["location"] == repository
    [archive] = latest.json["archives"]
    assert archive["name"] == "other-{x}"
    assert archive["stats"]["nfiles"] == 4
    assert latest.json["cache"]["stats"]["unique_csize"] > 0


async def test_extract_names_each_item_it_writes_as_a_listed_item_read_only_when_asked(
    repository: str, source_tree: Path, borg_env: dict[str, str], tmp_path: Path
) -> None:
    run = dict(borg=BORG, passphrase=PASSPHRASE, env=borg_env)
    named_after_the_passphrase = source_tree / f"{PASSPHRASE}.txt"
    named_after_the_passphrase.write_text("x")
    listed: list[ListedItem] = []

    def collect(event: BorgEvent) -> None:
        if isinstance(event, ListedItems):
            listed.extend(event)

    target = tmp_path / "target"
    target.mkdir()
    with trio.fail_after(30):
        await run_borg(commands.create(repository, "box-1", [str(source_tree)]), **run)
        result = await run_borg(commands.extract(repository, "box-1"), cwd=str(target),
                                on_event=collect, **run)
    archived = source_tree.relative_to("/")
    expected = [str(archived)] + [f"{archived}/{name}" for name in (
        "docs", "docs/letter.txt", "photo.bin", "empty", "[redacted].txt")]
    assert sorted(item.message for item in listed) == sorted(expected)
    assert not any(message.name == "borg.output.list" for message in result.log), "kept out of the last lines"
    assert (target / archived / "photo.bin").exists()


async def test_wrong_passphrase_fails_fast(repository: str, borg_env: dict[str, str]) -> None:
    started = trio.current_time()
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(commands.list_archives(repository), borg=BORG, passphrase="not it", env=borg_env)
    assert trio.current_time() - started < 3
    error = failure.value
    assert error.code == ErrorCode.PASSPHRASE_WRONG
    assert error.data["borg_msgid"] == "PassphraseWrong"
    assert error.data["exit_code"] == 52
    assert error.message == f"The passphrase is wrong for the repository at {repository}."
    assert "not it" not in repr(error.to_wire())


async def test_missing_passphrase_fails_fast_instead_of_prompting(repository: str, borg_env: dict[str, str]) -> None:
    started = trio.current_time()
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(commands.list_archives(repository), borg=BORG, env=borg_env)
    assert trio.current_time() - started < 3
    assert failure.value.code == ErrorCode.PASSPHRASE_WRONG
    assert failure.value.data["borg_msgid"] == "NoPassphraseFailure"


async def test_missing_repository(tmp_path: Path, borg_env: dict[str, str]) -> None:
    missing = str(tmp_path / "nothing-here")
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(commands.list_archives(missing), borg=BORG, passphrase=PASSPHRASE, env=borg_env)
    assert failure.value.code == ErrorCode.REPOSITORY_NOT_FOUND
    assert failure.value.data["exit_code"] == 13
    assert failure.value.data["borg_msgid"] == "Repository.DoesNotExist"
    assert failure.value.message == f"No repository exists at {missing}."
    assert failure.value.data["last_lines"] == [f"Repository {missing} does not exist."]


async def test_init_over_an_existing_repository(repository: str, borg_env: dict[str, str]) -> None:
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(commands.init(repository, "repokey-blake2"), borg=BORG, passphrase=PASSPHRASE, env=borg_env)
    assert failure.value.code == ErrorCode.REPOSITORY_EXISTS
    assert failure.value.data["exit_code"] == 10


async def test_passphrase_is_not_in_cmdline_or_environ_of_running_borg(
    repository: str, tmp_path: Path, borg_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BORG_PASSPHRASE", "inherited-secret")
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("LISTEN_FDS", "1")
    record = tmp_path / "record"
    recording_borg = python_script(
        tmp_path,
        "recording_borg.py",
        """
        import os, sys
        record = sys.argv[1]
        with open(record + ".pid", "w") as file:
            file.write(str(os.getpid()))
        os.execv(sys.executable, [sys.executable, "-m", "borg", *sys.argv[2:]])
        """,
    )
    feeder = FifoFeeder(tmp_path / "stream")
    borg_started = trio.Event()
    seen: dict[str, bytes] = {}

    def on_event(event: BorgEvent) -> None:
        if isinstance(event, ArchiveProgress) and not event.finished:
            borg_started.set()

    environ_before = dict(os.environ)
    fds_before = open_fds()
    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(feeder.run, None, 2**18, 0.05)
            with trio.fail_after(20):
                async with trio.open_nursery() as borg_nursery:
                    borg_nursery.start_soon(
                        lambda: run_borg(
                            with_read_special(commands.create(repository, "watched", [str(feeder.path)])),
                            borg=(*recording_borg, str(record)),
                            passphrase=PASSPHRASE,
                            env=borg_env,
                            on_event=on_event,
                            grace_period=0.2,
                        )
                    )
                    await borg_started.wait()
                    pid = (tmp_path / "record.pid").read_text()
                    for name in ("cmdline", "environ"):
                        seen[name] = Path(f"/proc/{pid}/{name}").read_bytes()
                    borg_nursery.cancel_scope.cancel()
        finally:
            feeder.release()
    assert b"borg" in seen["cmdline"] and b"watched" in seen["cmdline"]
    for blob in seen.values():
        assert PASSPHRASE.encode() not in blob
        assert b"inherited-secret" not in blob
    environ = seen["environ"].split(b"\0")
    assert any(entry.startswith(b"BORG_PASSPHRASE_FD=") for entry in environ)
    assert not any(entry.startswith((b"BORG_PASSPHRASE=", b"NOTIFY_SOCKET=", b"LISTEN_FDS=")) for entry in environ)
    assert b"BORG_EXIT_CODES=modern" in environ
    assert dict(os.environ) == environ_before
    assert open_fds() == fds_before


async def cancel_create_once_it_runs(
    repository: str, feeder: FifoFeeder, fifo_bytes: int | None, borg_env: dict[str, str], grace_period: float
) -> float:
    """Start a create that reads the FIFO, cancel it at its first progress line; the seconds it took to stop."""
    borg_started = trio.Event()

    def on_event(event: BorgEvent) -> None:
        if isinstance(event, ArchiveProgress) and not event.finished:
            borg_started.set()

    async with trio.open_nursery() as nursery:
        try:
            nursery.start_soon(feeder.run, fifo_bytes, 2**18, 0.05)
            with trio.fail_after(20):
                async with trio.open_nursery() as borg_nursery:
                    borg_nursery.start_soon(
                        lambda: run_borg(
                            with_read_special(commands.create(repository, "interrupted", [str(feeder.path)])),
                            borg=BORG,
                            passphrase=PASSPHRASE,
                            env=borg_env,
                            on_event=on_event,
                            grace_period=grace_period,
                        )
                    )
                    await borg_started.wait()
                    cancelled_at = trio.current_time()
                    borg_nursery.cancel_scope.cancel()
                return trio.current_time() - cancelled_at
        finally:
            feeder.release()


async def assert_unlocked_and_usable(repository: str, borg_env: dict[str, str], archive_may_exist: bool) -> None:
    assert not (Path(repository) / "lock.exclusive").exists()
    assert not (Path(repository) / "lock.roster").exists()
    with trio.fail_after(10):
        listed = await run_borg(commands.list_archives(repository), borg=BORG, passphrase=PASSPHRASE, env=borg_env)
    if not archive_may_exist:
        assert "interrupted" not in [archive["name"] for archive in listed.json["archives"]]


async def test_cancelled_create_stops_on_sigint_within_grace_period_and_leaves_no_lock(
    repository: str, tmp_path: Path, borg_env: dict[str, str]
) -> None:
    # Borg's first SIGINT means "checkpoint, then stop after the current file": the file ends within 1 s.
    grace_period = 5.0
    stopped_after = await cancel_create_once_it_runs(
        repository, FifoFeeder(tmp_path / "stream"), 4 * 2**20, borg_env, grace_period
    )
    assert stopped_after < grace_period
    # borg finishes the file it is in; on a slow machine that can be the whole archive.
    await assert_unlocked_and_usable(repository, borg_env, archive_may_exist=True)


async def test_cancelled_create_of_an_endless_file_stops_on_sigterm_and_leaves_no_lock(
    repository: str, tmp_path: Path, borg_env: dict[str, str]
) -> None:
    stopped_after = await cancel_create_once_it_runs(
        repository, FifoFeeder(tmp_path / "stream"), None, borg_env, grace_period=0.5
    )
    assert stopped_after < 3
    await assert_unlocked_and_usable(repository, borg_env, archive_may_exist=False)


async def test_borg_that_ignores_sigint_and_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = python_script(
        tmp_path,
        "stubborn.py",
        """
        import json, os, signal, sys, time
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(json.dumps({"type": "log_message", "levelname": "INFO", "name": "stub", "message": str(os.getpid())}),
              file=sys.stderr, flush=True)
        while True:
            time.sleep(1)
        """,
    )
    pids: list[int] = []
    ready = trio.Event()

    def on_event(event: BorgEvent) -> None:
        if isinstance(event, LogMessage) and event.name == "stub":
            pids.append(int(event.message))
            ready.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: run_borg(
                    BorgCommand(("wait",), json_output=False),
                    borg=stubborn,
                    on_event=on_event,
                    grace_period=0.3,
                    kill_delay=0.3,
                )
            )
            await ready.wait()
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel()
        stopped_after = trio.current_time() - cancelled_at
    assert 0.6 <= stopped_after < 3
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


async def test_a_long_silent_run_is_not_ended_by_the_daemon_idling(tmp_path: Path) -> None:
    # Worker threads of trio end after 10 idle seconds; borg must not end with the one that started it.
    silent = python_script(tmp_path, "silent.py", """
        import time
        time.sleep(13)
        print("done")
        """)
    result = await run_borg(BorgCommand(("wait",), json_output=False), borg=silent)
    assert result.exit_code == 0 and result.stdout.strip() == "done"


async def test_a_borg_that_cannot_be_run_fails_the_run_saying_why(tmp_path: Path) -> None:
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(BorgCommand(("list",), json_output=False), borg=[str(tmp_path / "no-borg-here")])
    assert "cannot run" in failure.value.message and "No such file or directory" in failure.value.message, failure.value.message


async def test_borg_ends_when_the_daemon_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "borg.pid"
    daemon_like = python_script(tmp_path, "daemon_like.py", f"""
        import trio
        from backupd.borg.commands import BorgCommand
        from backupd.borg.runner import run_borg

        trio.run(lambda: run_borg(BorgCommand(("wait",), json_output=False),
                                  borg=["sh", "-c", "echo $$ > {marker}; exec sleep 600"]))
        """)
    process = await trio.lowlevel.open_process(daemon_like, cwd=str(Path(__file__).parent.parent))
    with trio.fail_after(20):
        while not marker.exists() or not marker.read_text().strip():
            await trio.sleep(0.05)
    borg_pid = int(marker.read_text())
    os.kill(borg_pid, 0)
    process.kill()
    await process.wait()
    with trio.fail_after(5):
        while Path(f"/proc/{borg_pid}").exists() and "Z" not in Path(f"/proc/{borg_pid}/stat").read_text().split()[2]:
            await trio.sleep(0.05)


GARBLED_BORG = """
import sys
err = sys.stderr.buffer
err.write(b"plain text, not json\\n")
err.write(b"\\xff\\xfe invalid utf-8 \\x80\\n")
err.write(b'{"type": "log_message", "message": "cut off\\n')
err.write(b"[1, 2, 3]\\n")
err.write(b'{"type": "archive_progress", "nfiles": "many", "original_size": true, "finished": "yes"}\\n')
err.write(b'{"type": "file_status", "status": "A"}\\n')
err.write(b'{"type": "question_prompt", "msgid": "BORG_X", "message": "Continue?"}\\n')
err.write(b'{"type": "something_new"}\\n')
err.write(b'Enter passphrase: {"type": "log_message", "levelname": "ERROR", "message": "glued", "msgid": "X"}\\n')
err.write(b"\\n\\r\\n")
err.write(b'{"type": "progress_percent", "operation": 1, "msgid": "extract", "current": 5, "total": 10, "info": ["a"], "message": "50%", "finished": false}\\n')
err.write(b'{"type": "file_status", "status": "A", "path": "x"}\\n')
err.write(b"no newline at the end")
err.flush()
sys.stdout.write(sys.argv[1] if len(sys.argv) > 1 else "")
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


async def test_garbled_stderr_never_raises(tmp_path: Path) -> None:
    garbled = python_script(tmp_path, "garbled.py", GARBLED_BORG)
    events: list[BorgEvent] = []
    with trio.fail_after(10):
        result = await run_borg(
            BorgCommand(("not json at all", "1"), json_output=True), borg=garbled, on_event=events.append
        )
    assert result.exit_code == 1
    assert result.json is None
    assert result.log[-1].message.startswith("borg's JSON result could not be read")
    texts = [event.message for event in events if isinstance(event, LogMessage)]
    assert texts[:4] == [
        "plain text, not json",
        "\ufffd\ufffd invalid utf-8 \ufffd",
        '{"type": "log_message", "message": "cut off',
        "[1, 2, 3]",
    ]
    assert ArchiveProgress(None, None, None, None, None, False, None) in events
    assert "Continue?" in texts and '{"type": "something_new"}' in texts
    assert texts[-3:] == ["Enter passphrase: ", "glued", "no newline at the end"]
    assert ProgressPercent(1, "extract", 5, 10, ["a"], "50%", False) in events
    assert events.count(FileStatus("A", "x")) == 1


async def test_garbled_failure_is_reported_with_last_lines(tmp_path: Path) -> None:
    garbled = python_script(tmp_path, "garbled.py", GARBLED_BORG)
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(BorgCommand(("{}", "2"), json_output=True), borg=garbled)
    error = failure.value
    assert error.code == ErrorCode.BORG_FAILED
    assert error.data["exit_code"] == 2
    assert error.data["borg_msgid"] == "X"
    assert error.message == "Borg failed with exit code 2: glued"
    assert len(error.data["last_lines"]) == 10
    assert error.data["last_lines"][-1] == "no newline at the end"
    assert error.result.json is None


async def test_passphrase_arrives_through_the_fd_and_is_redacted_from_what_borg_prints(tmp_path: Path) -> None:
    echoing = python_script(
        tmp_path,
        "echoing.py",
        """
        import json, os, sys
        with os.fdopen(int(os.environ["BORG_PASSPHRASE_FD"])) as fd:
            passphrase = fd.read()
        print(json.dumps({"type": "log_message", "levelname": "ERROR", "message": "got " + passphrase,
                          "msgid": "PassphraseWrong"}), file=sys.stderr)
        sys.exit(52)
        """,
    )
    with trio.fail_after(10), pytest.raises(BorgFailed) as failure:
        await run_borg(BorgCommand(("list",), json_output=True), borg=echoing, passphrase=PASSPHRASE)
    error = failure.value
    assert error.code == ErrorCode.PASSPHRASE_WRONG
    assert error.data["last_lines"] == ["got [redacted]"]
    assert all(PASSPHRASE not in entry.message for entry in error.result.log)


async def test_exception_in_on_event_stops_borg(tmp_path: Path) -> None:
    sleeper = python_script(
        tmp_path,
        "sleeper.py",
        """
        import sys, time
        print('{"type": "log_message", "levelname": "INFO", "message": "hello"}', file=sys.stderr, flush=True)
        time.sleep(60)
        """,
    )

    def explode(event: BorgEvent) -> None:
        raise RuntimeError("subscriber bug")

    started = trio.current_time()
    with trio.fail_after(10), pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="subscriber bug")):
        await run_borg(BorgCommand(("x",), json_output=False), borg=sleeper, on_event=explode, grace_period=5)
    assert trio.current_time() - started < 3

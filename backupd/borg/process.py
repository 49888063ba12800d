"""A child process the event loop can read and wait on, started from the daemon's main thread.

The child's parent-death signal (PR_SET_PDEATHSIG) fires when the *thread* that forked it
exits. trio starts processes from a worker thread, which ends after ten idle seconds and
would take a long borg run down with it; forking from the main thread ties the signal to
the daemon itself. The child sets that signal and gives up capabilities in
``backupd.capabilities`` run as a program before it becomes the program asked for, so the
daemon runs no code of its own between fork and exec and starts it with vfork: a fraction of
a millisecond on the event loop, where a fork of the daemon took milliseconds.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import IO

import trio

from backupd.capabilities import Capability, wrapped

# Room for a second or more of a restore's ``--list`` lines, so they can be read in large batches.
STDERR_PIPE_BYTES = 1024 * 1024


class ChildProcess:
    """stdin /dev/null, stdout and stderr as trio streams, its own session, ended with the daemon,
    keeping only the given capabilities."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        cwd: str | None,
        pass_fds: Sequence[int],
        capabilities: frozenset[Capability],
    ) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("a child process that ends with the daemon is started from the main thread")
        self._popen = subprocess.Popen(
            wrapped(argv, capabilities, os.getpid()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            pass_fds=tuple(pass_fds),
            start_new_session=True,
        )
        self.pid = self._popen.pid
        self._exited: int | None = os.pidfd_open(self.pid)
        self.stdout = _stream_of(self._popen.stdout)
        assert self._popen.stderr is not None
        self.stderr_pipe_bytes = _enlarged(self._popen.stderr.fileno(), STDERR_PIPE_BYTES)
        self.stderr = _stream_of(self._popen.stderr)

    @property
    def returncode(self) -> int | None:
        """The exit status once reaped; -N when a signal N ended it."""
        return self._popen.returncode

    async def wait(self) -> int:
        if self._popen.returncode is None:
            assert self._exited is not None
            await trio.lowlevel.wait_readable(self._exited)
            self._popen.wait()
        if self._exited is not None:
            os.close(self._exited)
            self._exited = None
        return self._popen.returncode

    def send_signal(self, signal_number: int) -> None:
        """Signal the child unless it has been reaped (its pid may belong to another process then)."""
        self._popen.send_signal(signal_number)



def _enlarged(pipe_fd: int, size: int) -> int:
    """The pipe's capacity after asking for ``size`` bytes; an unprivileged daemon over its
    quota of pipe memory keeps the capacity it had."""
    try:
        return fcntl.fcntl(pipe_fd, fcntl.F_SETPIPE_SZ, size)
    except OSError:
        return fcntl.fcntl(pipe_fd, fcntl.F_GETPIPE_SZ)


def _stream_of(pipe: IO[bytes] | None) -> trio.lowlevel.FdStream:
    assert pipe is not None
    fd = os.dup(pipe.fileno())
    pipe.close()
    return trio.lowlevel.FdStream(fd)

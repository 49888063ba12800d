"""A real S3 server on 127.0.0.1 for the tests: moto's server mode with signatures checked, an
access key allowed everything, its request log to count uploads, and TCP relays in front of
it: one a test can cut like a server going away, one in a process of its own a test can
freeze like a server that stops answering.

Run as a program (``python tests/s3.py TARGET_PORT``) this file is that second relay: it prints
its port, serves until its stdin closes."""

from __future__ import annotations

import json
import os
import signal
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

START_TIMEOUT = 30.0
# moto answers these first requests without checking a signature: they make the key the tests use.
UNSIGNED_SETUP_REQUESTS = 3
_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d+)')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class S3Server:
    """moto_server on a free port; its log holds one line per request."""

    port: int
    log_path: Path
    process: subprocess.Popen[bytes]
    access_key_id: str = ""
    secret_access_key: str = field(default="", repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, endpoint: str | None = None) -> Any:
        return boto3.client("s3", endpoint_url=endpoint or self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def new_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def objects(self, bucket: str, prefix: str = "") -> dict[str, bytes]:
        client = self.client()
        keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", ())]
        return {key: client.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request so far."""
        text = self.log_path.read_text(errors="replace")
        return [(m["method"], m["path"], int(m["status"])) for m in _REQUEST_LINE.finditer(text)]

    def mirror_options(self, bucket: str, prefix: str | None = None, endpoint: str | None = None) -> dict[str, Any]:
        options = {"provider": endpoint or self.endpoint, "bucket": bucket, "access_key_id": self.access_key_id,
                   "secret_access_key": self.secret_access_key}
        if prefix is not None:
            options["prefix"] = prefix
        return options

    def rclone_environment(self, endpoint: str | None = None) -> dict[str, str]:
        """For the tests' own rclone runs (downloading the bucket to compare)."""
        return {"PATH": os.environ["PATH"], "RCLONE_CONFIG_TEST_TYPE": "s3", "RCLONE_CONFIG_TEST_PROVIDER": "Other",
                "RCLONE_CONFIG_TEST_ENDPOINT": endpoint or self.endpoint, "RCLONE_CONFIG_TEST_FORCE_PATH_STYLE": "true",
                "RCLONE_CONFIG_TEST_ACCESS_KEY_ID": self.access_key_id,
                "RCLONE_CONFIG_TEST_SECRET_ACCESS_KEY": self.secret_access_key}

    def download(self, bucket: str, prefix: str, target: Path) -> None:
        subprocess.run(["rclone", "--config=", "copy", f"test:{bucket}/{prefix}", str(target)],
                       env=self.rclone_environment(), check=True, timeout=120, capture_output=True)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def moto_server_command() -> str:
    beside = Path(sys.executable).parent / "moto_server"
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server is not installed: pip install 'moto[server]'")
    return found


def start_s3_server(folder: Path) -> S3Server:
    port = free_port()
    log_path = folder / "moto.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(UNSIGNED_SETUP_REQUESTS)
    with open(log_path, "ab") as log:
        process = subprocess.Popen([moto_server_command(), "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    server = S3Server(port, log_path, process)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start:\n{log_path.read_text()}") from None
            time.sleep(0.1)
    _make_access_key(server)
    return server


def _make_access_key(server: S3Server) -> None:
    iam = boto3.client("iam", endpoint_url=server.endpoint, region_name="us-east-1",
                       aws_access_key_id="setup", aws_secret_access_key="setup")
    iam.create_user(UserName="edgebox")
    key = iam.create_access_key(UserName="edgebox")["AccessKey"]
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
    iam.put_user_policy(UserName="edgebox", PolicyName="backups", PolicyDocument=json.dumps(policy))
    server.access_key_id = key["AccessKeyId"]
    server.secret_access_key = key["SecretAccessKey"]


class Relay:
    """A TCP relay from a port of its own to the S3 server. ``cut()`` drops every connection and
    refuses new ones, as a server that went away; ``resume()`` serves again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self._target = target_port
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.resume()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def resume(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    upstream.close()
                    return
                self._connections += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pump, args=(source, target), daemon=True).start()


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class FreezableRelay:
    """A TCP relay to the S3 server in a process of its own. ``freeze()`` stops that process
    (SIGSTOP): connections stay open and new ones are still accepted by the kernel, but nothing
    is answered, as a service that hangs; ``thaw()`` lets it go on (SIGCONT)."""

    def __init__(self, target_port: int) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, str(target_port)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip().isdigit():
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the relay did not start: {line!r}")
        self.port = int(line)
        self.frozen = False

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        self.process.kill()  # a stopped process dies of SIGKILL too
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def __enter__(self) -> FreezableRelay:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _serve_relay(target_port: int) -> None:
    relay = Relay(target_port)
    print(relay.port, flush=True)
    sys.stdin.read()  # until the test process closes the pipe, or dies


if __name__ == "__main__":
    _serve_relay(int(sys.argv[1]))

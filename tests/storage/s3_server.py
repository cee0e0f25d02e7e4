"""An S3-compatible server for tests: moto's standalone server (``moto[server]``, a dev dependency) started
as a subprocess on a free 127.0.0.1 port, with one bucket, stopped by pid.

    server = start_s3_server()          # waits at most ``timeout_s`` for it to answer
    env = server.env()                  # AWS_* variables that point boto/pyarrow clients (and subprocesses) at it
    uri = server.uri("some/prefix")     # s3://<bucket>/some/prefix, for results.staging_dir
    server.stop()

Data lives in the server's memory: every process that has ``env()`` sees the same objects.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.fs as pafs

ACCESS_KEY = "testing"  # moto accepts any credentials; these are not secrets
SECRET_KEY = "testing"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class S3Server:
    """A running moto server: its endpoint, its bucket and its process."""

    endpoint: str
    bucket: str
    process: subprocess.Popen = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def env(self) -> dict[str, str]:
        """The environment variables that point S3 clients at this server (no real credentials)."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def uri(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix.strip('/')}".rstrip("/")

    def filesystem(self) -> pafs.S3FileSystem:
        """A pyarrow filesystem on this server, independent of the code under test's own."""
        return pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION,
                                 endpoint_override=self.endpoint, connect_timeout=5, request_timeout=30)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server by its pid (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout_s)


def start_s3_server(bucket: str = "staging", timeout_s: float = 30.0, log: Path | None = None) -> S3Server:
    """Start moto's server on a free loopback port, wait until it answers (at most ``timeout_s``) and create
    ``bucket``.

    Raises:
        RuntimeError: the server exited or did not answer in time (it is stopped first), with its log tail.
    """
    port = free_port()
    out = log.open("wb") if log else subprocess.DEVNULL
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = S3Server(f"http://127.0.0.1:{port}", bucket, process)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{server.endpoint}/moto-api/data.json", timeout=2):  # noqa: S310 - loopback
                break
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                server.stop()
                tail = log.read_text()[-2000:] if log and log.exists() else ""
                raise RuntimeError(f"moto server on port {port} did not start in {timeout_s}s: {exc}\n{tail}") \
                    from None
            time.sleep(0.2)
    fs = pafs.S3FileSystem(access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION,
                           endpoint_override=server.endpoint, allow_bucket_creation=True, connect_timeout=5,
                           request_timeout=30)
    fs.create_dir(bucket)
    return server

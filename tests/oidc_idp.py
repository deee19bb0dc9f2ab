"""A real OpenID Connect provider for the tests (node `oidc-provider`, see oidc/idp.mjs), a
token-endpoint proxy that can tamper with id_tokens, and an OIDC-enabled Animus stack.

``OIDCStack`` wires them: the provider knows the hub as a client (callback at the
stack's public URL), the hub reads the provider's discovery document and sends its
token requests through ``TokenTamper``, which passes them on unchanged unless a test
asks it to break the id_token (bad signature) or swap it for another one (a replayed
token: wrong nonce; a token for another client: wrong audience).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from stack import STACK_API_CONFIG, HubStack

HERE = Path(__file__).parent
HUB_CLIENT_ID = "animus-hub"
OTHER_CLIENT_ID = "other-app"
OTHER_REDIRECT = "http://127.0.0.1:9/other-app/callback"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_modules() -> Path:
    path = Path(sys.prefix) / "node_modules"
    if not (path / "oidc-provider").exists():
        raise RuntimeError(f"oidc-provider is not installed in {path}: run ./dev setup")
    return path


class OIDCProvider:
    """node oidc-provider on 127.0.0.1 with the users of `users_file`."""

    def __init__(self, root: Path, clients: list[dict]):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.users_file = self.root / "idp-users.json"
        self.clients = clients
        self.proc: subprocess.Popen | None = None
        self.log_path = self.root / "idp.log"

    def set_user(self, login: str, groups: list[str]) -> None:
        users = json.loads(self.users_file.read_text()) if self.users_file.exists() else {}
        users[login] = {"name": login.title(), "groups": list(groups)}
        tmp = self.users_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(users))
        tmp.replace(self.users_file)

    def start(self, timeout: float = 30) -> OIDCProvider:
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is required for the OIDC provider")
        if not self.users_file.exists():
            self.users_file.write_text("{}")
        config = self.root / "idp-config.json"
        config.write_text(
            json.dumps(
                {
                    "port": self.port,
                    "issuer": self.issuer,
                    "modules": str(node_modules()),
                    "users_file": str(self.users_file),
                    "clients": self.clients,
                    "cookie_key": secrets.token_hex(16),
                }
            )
        )
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (open while the process runs)
        self.proc = subprocess.Popen(
            [node, str(HERE / "oidc" / "idp.mjs"), str(config)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(self.issuer + "/.well-known/openid-configuration", timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the OIDC provider did not start:\n{self.log_path.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if getattr(self, "_log", None):
            self._log.close()


def break_signature(jwt_value: str) -> str:
    """The same token with one byte of its signature changed."""
    header, payload, signature = jwt_value.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return f"{header}.{payload}.{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


def jwt_claims(jwt_value: str) -> dict:
    payload = jwt_value.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class TokenTamper:
    """Forwards token requests to the provider; may break or swap the id_token in the answer."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.mode = "pass"  # or "bad_signature", "swap"
        self.swap_with = ""
        self.seen: list[str] = []
        tamper = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization", "accept")
                }
                r = requests.post(tamper.upstream, data=body, headers=headers, timeout=30)
                content = r.content
                if r.status_code == 200:
                    data = r.json()
                    if data.get("id_token"):
                        tamper.seen.append(data["id_token"])
                        if tamper.mode == "bad_signature":
                            data["id_token"] = break_signature(data["id_token"])
                        elif tamper.mode == "swap":
                            data["id_token"] = tamper.swap_with
                    content = json.dumps(data).encode()
                self.send_response(r.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> TokenTamper:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def sso_login(
    http: requests.Session, start_url: str, login: str, stop_at: str | None = None
) -> requests.Response | str:
    """Follow a login from `start_url` through the provider's login form as `login`.

    Returns the first redirect target starting with `stop_at` (not requested), or the
    final response.
    """
    url, method, data = start_url, "GET", None
    for _ in range(20):
        if stop_at and url.startswith(stop_at):
            return url
        r = http.request(method, url, data=data, allow_redirects=False, timeout=30)
        method, data = "GET", None
        if r.is_redirect:
            url = urljoin(r.url, r.headers["Location"])
            continue
        form = re.search(r'<form[^>]*action="([^"]+)"[^>]*method="post"', r.text)
        if r.status_code == 200 and form and 'name="login"' in r.text:
            url, method, data = (
                urljoin(r.url, form.group(1)),
                "POST",
                {"prompt": "login", "login": login, "password": "x"},
            )
            continue
        return r
    raise AssertionError("too many redirects in the login")


def other_client_id_token(provider: OIDCProvider, login: str) -> str:
    """An id_token the provider issues to another client (a raw code flow with PKCE)."""
    import hashlib

    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    http = requests.Session()
    auth = (
        f"{provider.issuer}/auth?client_id={OTHER_CLIENT_ID}&response_type=code&scope=openid+groups"
        f"&redirect_uri={OTHER_REDIRECT}&state=s1&nonce=n1&code_challenge={challenge}&code_challenge_method=S256"
    )
    callback = sso_login(http, auth, login, stop_at=OTHER_REDIRECT)
    assert isinstance(callback, str), callback
    code = parse_qs(urlparse(callback).query)["code"][0]
    r = requests.post(
        f"{provider.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": OTHER_REDIRECT,
            "code_verifier": verifier,
            "client_id": OTHER_CLIENT_ID,
            "client_secret": "other-secret",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return r.json()["id_token"]


class OIDCStack:
    """A provider, the token tamper proxy and an Animus stack logging in through them."""

    def __init__(self, root: Path, hub_config: str = ""):
        self.root = Path(root)
        self.client_secret = secrets.token_urlsafe(24)
        secret_file = self.root / "oidc-client-secret"
        self.root.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(self.client_secret)
        secret_file.chmod(0o600)
        self.stack = HubStack(
            self.root / "animus", api_config=STACK_API_CONFIG, hub_config="", oidc_client_id=HUB_CLIENT_ID
        )
        callback = self.stack.url + "/hub/oauth_callback"
        self.provider = OIDCProvider(
            self.root / "idp",
            clients=[
                {"client_id": HUB_CLIENT_ID, "client_secret": self.client_secret, "redirect_uris": [callback]},
                {"client_id": OTHER_CLIENT_ID, "client_secret": "other-secret", "redirect_uris": [OTHER_REDIRECT]},
            ],
        )
        self.tamper = TokenTamper(self.provider.issuer + "/token")
        from dataclasses import replace

        self.stack.settings = replace(
            self.stack.settings,
            oidc_issuer=self.provider.issuer,
            oidc_client_secret_file=str(secret_file),
        )
        self.stack.hub_config = (
            "\nc.AnimusOIDCAuthenticator.manage_groups = True"
            f"\nc.AnimusOIDCAuthenticator.token_url = {self.tamper.url!r}\n" + hub_config
        )
        self.callback = callback

    def start(self) -> OIDCStack:
        self.provider.start()
        self.tamper.start()
        try:
            self.stack.start()
        except BaseException:
            self.tamper.stop()
            self.provider.stop()
            raise
        return self

    def stop(self) -> None:
        self.stack.stop()
        self.tamper.stop()
        self.provider.stop()

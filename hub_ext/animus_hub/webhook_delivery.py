"""Sending webhooks: configuration, signatures, the signing-secret box and the HTTP sender.

No database here: ``services.webhooks`` decides what to send and records what
happened; ``scheduler.WebhookDeliveryStep`` ties the two together.

Signature (what receivers verify, docs/how-to/webhooks.md)::

    Animus-Timestamp: 1767225600
    Animus-Signature: v1=<hex HMAC-SHA256(secret, "1767225600." + body)>

The signing secret must be usable for signing, so it cannot be stored as a one-way
hash: it is encrypted with AES-256-GCM under a key derived (HKDF-SHA256) from one of
the configured key strings. The first key encrypts, every listed key decrypts, so
keys rotate by putting a new one first and running ``animus-hub webhooks rotate-keys``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from traitlets import Float, Integer, List, Unicode, default, validate
from traitlets.config import LoggingConfigurable

from ._version import __version__
from .errors import AnimusError
from .keyfiles import read_or_create
from .orm import utcnow

SIGNATURE_VERSION = "v1"
SECRET_PREFIX = "whsec_"  # noqa: S105 (the visible prefix of generated secrets, not a secret)
KEY_MIN_CHARS = 32
EXCERPT_CHARS = 512
USER_AGENT = f"Animus-Webhooks/{__version__}"

# Never a webhook target unless `allowed_networks` says otherwise: link-local (which
# holds the cloud metadata services at 169.254.169.254), other metadata addresses,
# "this network", multicast and reserved ranges.
DEFAULT_BLOCKED_NETWORKS = [
    "0.0.0.0/8",
    "169.254.0.0/16",
    "100.100.100.200/32",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "fe80::/10",
    "fd00:ec2::254/128",
    "ff00::/8",
]


# --- signatures --------------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The ``Animus-Signature`` header value for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={mac}"


def verify_signature(secret: str, timestamp: str, body: bytes, header: str, tolerance: float = 300) -> bool:
    """What a receiver does (and what our tests do): constant-time compare, bounded clock skew."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - sent) > tolerance:
        return False
    expected = sign(secret, sent, body)
    return any(hmac.compare_digest(expected, part.strip()) for part in header.split(","))


# --- the signing-secret box ------------------------------------------------------------------


class SecretBox:
    """AES-256-GCM encryption of signing secrets under keys derived from configured strings.

    A stored value is ``v1.<key id>.<base64url(nonce + ciphertext)>``; the key id (8 hex
    of the derived key's sha256) says which key decrypts it. The webhook id is bound in
    as associated data, so a ciphertext copied onto another row does not decrypt.
    """

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys: list[tuple[str, AESGCM]] = []
        for material in keys:
            if len(material) < KEY_MIN_CHARS:
                raise ValueError(f"webhook secret keys must be at least {KEY_MIN_CHARS} characters long")
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"animus webhook secret v1").derive(
                material.encode()
            )
            self._keys.append((hashlib.sha256(derived).hexdigest()[:8], AESGCM(derived)))

    @property
    def primary_key_id(self) -> str:
        return self._keys[0][0]

    def key_id_of(self, stored: str) -> str:
        return stored.split(".", 2)[1] if stored.count(".") >= 2 else ""

    def encrypt(self, plaintext: str, webhook_id: int) -> str:
        kid, aead = self._keys[0]
        nonce = os.urandom(12)
        ct = aead.encrypt(nonce, plaintext.encode(), f"webhook:{webhook_id}".encode())
        return f"v1.{kid}.{base64.urlsafe_b64encode(nonce + ct).decode().rstrip('=')}"

    def decrypt(self, stored: str, webhook_id: int) -> str:
        try:
            version, kid, data = stored.split(".", 2)
        except ValueError:
            raise SecretUnavailable("the stored signing secret is malformed") from None
        aead = next((a for k, a in self._keys if k == kid), None)
        if version != "v1" or aead is None:
            raise SecretUnavailable(f"the signing secret was encrypted with key {kid}, which is not configured")
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        try:
            return aead.decrypt(raw[:12], raw[12:], f"webhook:{webhook_id}".encode()).decode()
        except InvalidTag:
            raise SecretUnavailable(f"the signing secret does not decrypt with key {kid}") from None


class SecretUnavailable(Exception):
    """A signing secret cannot be decrypted with the configured keys."""


def load_key_file(path: Path) -> list[str]:
    """Keys from a file, one a line (the first encrypts); created with one random key if missing."""
    text = read_or_create(path, lambda: (secrets.token_hex(32) + "\n").encode()).decode()
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


# --- where webhooks may point --------------------------------------------------------------


class NetworkPolicy:
    """Which IP addresses a webhook may reach: blocked networks, minus an admin allow-list."""

    def __init__(self, blocked: list[str], allowed: list[str]):
        self.blocked = [ipaddress.ip_network(n, strict=False) for n in blocked]
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in allowed]

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be reached, or None if it may."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in n for n in self.allowed if n.version == ip.version):
            return None
        for n in self.blocked:
            if n.version == ip.version and ip in n:
                return f"{ip} is in the blocked network {n} (link-local, cloud metadata or reserved)"
        return None


def check_url(url: str, policy: NetworkPolicy) -> str:
    """Validate a webhook URL as given; return it. Raises a 422 that says what is wrong."""

    def bad(message: str, reason: str = "invalid_webhook_url") -> AnimusError:
        return AnimusError(422, reason, message, {"url": url if reason != "invalid_webhook_url" else url[:200]})

    if url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        raise bad("The webhook URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(f"The webhook URL does not parse: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise bad(
            f"A webhook URL must start with http:// or https://, not {parts.scheme + ':' if parts.scheme else 'nothing'}"
        )
    if not parts.hostname:
        raise bad("The webhook URL has no host")
    if parts.username is not None or parts.password is not None:
        raise bad(
            "Put no credentials in the webhook URL (they would be shown to every maintainer); "
            "receivers authenticate Animus by the signature"
        )
    if parts.fragment:
        raise bad("A webhook URL has no #fragment")
    if port == 0:
        raise bad("Port 0 is not a port a receiver listens on")
    host = parts.hostname
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return url
    refusal = policy.refusal(host)
    if refusal:
        raise bad(f"Webhooks may not point at {host}: {refusal}", "webhook_url_blocked")
    return url


async def check_resolved(url: str, policy: NetworkPolicy) -> None:
    """Refuse a host name that resolves to a blocked address. An unresolvable name is
    accepted: deliveries record the failure (the receiver may not exist yet)."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return  # a literal address: check_url() decided
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return
    for info in infos:
        refusal = policy.refusal(str(info[4][0]))
        if refusal:
            raise AnimusError(
                422, "webhook_url_blocked", f"Webhooks may not point at {host}: it resolves to {refusal}", {"url": url}
            )


class BlockedAddressError(OSError):
    """A host resolved only to addresses webhooks may not reach."""


class GuardedResolver(AbstractResolver):
    """Resolves names, then drops blocked addresses: the connection goes only to an address
    that was checked (no DNS rebinding between a check and the connect)."""

    def __init__(self, policy: NetworkPolicy):
        self.policy = policy
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self.policy.refusal(r["host"]) is None]
        if not allowed:
            reason = self.policy.refusal(found[0]["host"]) if found else "no address"
            raise BlockedAddressError(f"{host} resolves only to blocked addresses: {reason}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# --- configuration -------------------------------------------------------------------------


class WebhookDelivery(LoggingConfigurable):
    """How animus-api signs and delivers webhooks (``c.WebhookDelivery.*``)."""

    secret_keys = List(
        Unicode(),
        help="""Keys (strings of at least 32 characters, e.g. `openssl rand -hex 32`) that
        encrypt webhook signing secrets in the database. The first encrypts; all decrypt.
        To rotate: put a new key first, keep the old ones, run
        `animus-hub webhooks rotate-keys`, then drop the old keys. Default: the
        comma-separated $ANIMUS_WEBHOOK_SECRET_KEYS, else the keys in `secret_key_file`.""",
    ).tag(config=True)

    @default("secret_keys")
    def _secret_keys_default(self) -> list[str]:
        return [k.strip() for k in os.environ.get("ANIMUS_WEBHOOK_SECRET_KEYS", "").split(",") if k.strip()]

    secret_key_file = Unicode(
        help="""A file holding the keys of `secret_keys`, one a line (first encrypts), used
        when `secret_keys` is empty; created with one random key if missing. The embedded
        profile sets it to <data dir>/secrets/webhook_secret_keys
        ($ANIMUS_WEBHOOK_SECRET_KEY_FILE).""",
    ).tag(config=True)

    @default("secret_key_file")
    def _secret_key_file_default(self) -> str:
        return os.environ.get("ANIMUS_WEBHOOK_SECRET_KEY_FILE", "")

    timeout = Float(10.0, help="Seconds one delivery attempt may take in all (connect, send, answer).").tag(config=True)
    connect_timeout = Float(5.0, help="Seconds to wait for the receiver's TCP/TLS connection.").tag(config=True)
    retry_base_seconds = Float(
        10.0,
        help="First retry delay in seconds; the delay doubles per attempt (with jitter: between half and all of it).",
    ).tag(config=True)
    retry_max_interval = Float(3600.0, help="Longest delay, in seconds, between two attempts.").tag(config=True)
    retry_horizon_seconds = Float(
        24 * 3600.0,
        help="""A delivery is retried until this many seconds after it was created, then
        marked failed. If nothing reached the receiver during that time the webhook is
        disabled (and the audit trail says so).""",
    ).tag(config=True)
    max_concurrency = Integer(64, help="Deliveries in flight at once (per scheduler).").tag(config=True)
    batch_size = Integer(500, help="Events fanned out, and deliveries claimed, per database round.").tag(config=True)
    blocked_networks = List(
        Unicode(),
        default_value=DEFAULT_BLOCKED_NETWORKS,
        help="""IP networks (CIDR) webhooks may not reach, checked at creation and at every
        connection. The default blocks link-local (cloud metadata at 169.254.169.254) and
        reserved ranges; in a cluster add the private ranges (10.0.0.0/8, 172.16.0.0/12,
        192.168.0.0/16, fc00::/7) and loopback (127.0.0.0/8, ::1/128) unless receivers live there.""",
    ).tag(config=True)
    allowed_networks = List(
        Unicode(),
        help="The admin allow-list: networks (CIDR) webhooks may reach even if `blocked_networks` lists them.",
    ).tag(config=True)

    @validate("blocked_networks", "allowed_networks")
    def _check_networks(self, proposal: Any) -> list[str]:
        for n in proposal["value"]:
            ipaddress.ip_network(n, strict=False)  # ValueError names the bad entry
        return proposal["value"]

    _box: SecretBox | None = None

    @property
    def policy(self) -> NetworkPolicy:
        return NetworkPolicy(self.blocked_networks, self.allowed_networks)

    def secret_box(self) -> SecretBox:
        """The box for signing secrets; 503 when no key is configured."""
        if self._box is None:
            keys = list(self.secret_keys)
            if not keys and self.secret_key_file:
                keys = load_key_file(Path(self.secret_key_file))
            if not keys:
                raise AnimusError(
                    503,
                    "webhook_keys_missing",
                    "Webhooks are not configured on this server: set c.WebhookDelivery.secret_keys "
                    "(or $ANIMUS_WEBHOOK_SECRET_KEYS)",
                )
            self._box = SecretBox(keys)
        return self._box

    def backoff(self, attempt: int, rng: Any = secrets.SystemRandom()) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based): exponential, with jitter."""
        delay = min(self.retry_max_interval, self.retry_base_seconds * 2 ** min(attempt - 1, 40))
        return delay / 2 + rng.uniform(0, delay / 2)


# --- the sender -------------------------------------------------------------------------------


@dataclass
class AttemptResult:
    delivery_id: int
    attempt: int
    started_at: Any
    duration_ms: int
    status_code: int | None
    error: str
    excerpt: str

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300 and not self.error


class WebhookSender:
    """POSTs signed bodies with a pooled HTTP client; never follows redirects."""

    def __init__(self, settings: WebhookDelivery):
        self.settings = settings
        self.policy = settings.policy
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=max(1, self.settings.max_concurrency),
                resolver=GuardedResolver(self.policy),
                ttl_dns_cache=10,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout, sock_connect=self.settings.connect_timeout),
                headers={"User-Agent": USER_AGENT},
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    def headers(
        *, secret: str, webhook_id: int, delivery_id: int, event_id: str, event_type: str, attempt: int, body: bytes
    ) -> dict[str, str]:
        timestamp = int(time.time())
        return {
            "Content-Type": "application/json",
            "Animus-Webhook-Id": str(webhook_id),
            "Animus-Delivery-Id": str(delivery_id),
            "Animus-Delivery-Attempt": str(attempt),
            "Animus-Event-Id": event_id,
            "Animus-Event-Type": event_type,
            "Idempotency-Key": event_id,
            "Animus-Timestamp": str(timestamp),
            "Animus-Signature": sign(secret, timestamp, body),
        }

    async def send(
        self, url: str, headers: dict[str, str], body: bytes, delivery_id: int, attempt: int
    ) -> AttemptResult:
        started = utcnow()
        t0 = time.perf_counter()
        status: int | None = None
        error = ""
        excerpt = b""
        host = urlsplit(url).hostname or ""
        refusal = None
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            refusal = self.policy.refusal(host)  # literal addresses never reach the resolver
        except ValueError:
            pass
        if refusal:
            error = f"refused: {refusal}"
        else:
            try:
                async with asyncio.timeout(self.settings.timeout + 1):
                    async with self._client().post(url, data=body, headers=headers, allow_redirects=False) as resp:
                        status = resp.status
                        excerpt = await resp.content.read(EXCERPT_CHARS)
                        if 300 <= status < 400:
                            location = resp.headers.get("Location", "")[:200]
                            error = f"answered {status} redirect to {location!r}: redirects are not followed, use the final URL"
                        elif not 200 <= status < 300:
                            error = f"answered {status}"
            except TimeoutError:
                error = f"no complete answer within {self.settings.timeout:g} s"
            except aiohttp.ClientError as e:
                error = describe_client_error(e)
            except OSError as e:
                error = f"connection failed: {e}"
        return AttemptResult(
            delivery_id=delivery_id,
            attempt=attempt,
            started_at=started,
            duration_ms=int((time.perf_counter() - t0) * 1000),
            status_code=status,
            error=error[:500],
            excerpt=excerpt.decode("utf-8", "replace")[:EXCERPT_CHARS],
        )


def describe_client_error(e: BaseException) -> str:
    cause = e
    while cause.__cause__ is not None or getattr(cause, "os_error", None) is not None:
        nxt = getattr(cause, "os_error", None) or cause.__cause__
        if nxt is None or nxt is cause:
            break
        cause = nxt
        if isinstance(cause, BlockedAddressError):
            return f"refused: {cause}"
    if isinstance(cause, BlockedAddressError):
        return f"refused: {cause}"
    text = str(e) or type(e).__name__
    return f"connection failed: {text}"

"""OpenID Connect single sign-on: JupyterHub's GenericOAuthenticator, set up from the IdP's discovery document.

``AnimusOIDCAuthenticator`` needs the issuer URL and a client id and secret. At start
it reads ``<issuer>/.well-known/openid-configuration`` (GenericOAuthenticator does not)
for the authorization, token, userinfo and JWKS endpoints. On top of what
GenericOAuthenticator does it

- sends a nonce bound to the login's state cookie and verifies the id_token: its
  signature against the provider's JWKS, issuer, audience (and ``azp``), expiry and
  nonce; a token that fails any check refuses the login (403);
- takes the person's groups from a configurable claim (``groups_claim``) of the
  verified id_token and userinfo; JupyterHub's groups are replaced by them at every
  login and identity refresh (``manage_groups``), which is how animus-api's group →
  role rules see them;
- keeps PKCE on and the OAuth tokens in the encrypted ``auth_state``, so the identity
  (groups) is refreshed from the provider's userinfo while the session lasts;
- controls sessions (TTL, concurrent-session limit, forced logout): see
  ``auth.hubsessions``.

SAML identity providers are used through an OIDC broker (Keycloak, Dex) in front of
them; see docs/how-to/sso-and-sessions.md.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from typing import Any

import jwt
from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthLoginHandler, _deserialize_state
from tornado import web
from traitlets import Float, List, Unicode, default

from .hubsessions import SessionControlMixin

# the nonce the current login expects (set for the duration of one authenticate())
_expected_nonce: contextvars.ContextVar[str | None] = contextvars.ContextVar("animus_oidc_nonce", default=None)
# id_token algorithms we accept: asymmetric only (a client secret must not sign identities)
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OIDCDiscoveryError(RuntimeError):
    """The provider's discovery document could not be read or does not fit the configuration."""


def fetch_discovery(
    issuer: str, timeout: float = 10.0, attempts: int = 5, validate_cert: bool = True
) -> dict[str, Any]:
    """Read ``<issuer>/.well-known/openid-configuration`` (a few attempts: the IdP may be starting too)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    if not url.startswith(("https://", "http://")):
        raise OIDCDiscoveryError(f"The issuer must be an http(s) URL, not {issuer!r}")
    context = None
    if not validate_cert:
        import ssl

        context = ssl._create_unverified_context()  # noqa: S323 (the operator turned validation off)
    last: Exception | None = None
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=timeout, context=context) as r:  # noqa: S310 (configured URL)
                doc = json.loads(r.read().decode("utf-8"))
            break
        except (urllib.error.URLError, OSError, ValueError) as e:
            last = e
            time.sleep(min(2**attempt * 0.5, 5))
    else:
        raise OIDCDiscoveryError(f"Cannot read the OIDC discovery document {url}: {last}")
    if not isinstance(doc, dict):
        raise OIDCDiscoveryError(f"{url} is not a JSON object")
    if doc.get("issuer", "").rstrip("/") != issuer.rstrip("/"):
        raise OIDCDiscoveryError(f"{url} names the issuer {doc.get('issuer')!r}, not the configured {issuer!r}")
    missing = [k for k in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not doc.get(k)]
    if missing:
        raise OIDCDiscoveryError(f"{url} lacks {', '.join(missing)}")
    return doc


def login_nonce(state_id: str, secret: bytes | str) -> str:
    """The nonce of a login: bound to its state id (kept in the signed state cookie) by an HMAC."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, b"animus-oidc-nonce:" + state_id.encode(), hashlib.sha256).hexdigest()


def _state_id(serialized_state: str | None) -> str:
    return str(_deserialize_state(serialized_state or "").get("state_id") or "") if serialized_state else ""


class OIDCLoginHandler(OAuthLoginHandler):
    """Adds the nonce to the authorization request."""

    def authorize_redirect(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        extra = dict(kwargs.get("extra_params") or {})
        state_id = _state_id(extra.get("state"))
        extra["nonce"] = login_nonce(state_id, self.settings["cookie_secret"])
        kwargs["extra_params"] = extra
        return super().authorize_redirect(*args, **kwargs)


class OIDCCallbackHandler(OAuthCallbackHandler):
    """Audits callbacks refused before any token exchange (state mismatch, provider error)."""

    def check_arguments(self) -> None:
        try:
            super().check_arguments()
        except web.HTTPError as e:
            self.authenticator.audit_failed_login(self, "", e.log_message or str(e))
            raise


class AnimusOIDCAuthenticator(SessionControlMixin, GenericOAuthenticator):
    """OpenID Connect login with verified id_tokens, groups from a claim and Animus session control."""

    login_handler = OIDCLoginHandler
    callback_handler = OIDCCallbackHandler

    issuer = Unicode(
        help="The OpenID Connect issuer URL; endpoints are read from <issuer>/.well-known/openid-configuration."
    ).tag(config=True)

    groups_claim = Unicode(
        "groups",
        help="The id_token / userinfo claim listing the person's groups (a list of names). JupyterHub's "
        "groups of the user are replaced by it at each login and identity refresh.",
    ).tag(config=True)

    jwks_url = Unicode(help="URL of the provider's signing keys (default: jwks_uri of the discovery document).").tag(
        config=True
    )

    id_token_algorithms = List(
        Unicode(),
        help="Accepted id_token signing algorithms (default: what the provider supports, asymmetric only).",
    ).tag(config=True)

    id_token_leeway = Float(30.0, help="Seconds of clock skew allowed when checking exp and iat.").tag(config=True)

    discovery_timeout = Float(10.0, help="Seconds to wait for the discovery document at start (per attempt).").tag(
        config=True
    )

    discovery: dict[str, Any]
    _jwks: dict[str, Any]
    _jwks_fetched: float = 0.0

    @default("login_service")
    def _login_service_default(self) -> str:
        return "single sign-on"

    @default("username_claim")
    def _username_claim_default(self) -> str:
        return "preferred_username"

    @default("manage_groups")
    def _manage_groups_default(self) -> bool:
        return True

    @default("enable_auth_state")
    def _enable_auth_state_default(self) -> bool:
        return True

    @default("auth_state_groups_key")
    def _groups_key_default(self):
        return self._groups_from_auth_state

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._jwks = {}
        self.discovery = {}
        if not self.issuer:
            raise OIDCDiscoveryError("AnimusOIDCAuthenticator.issuer is not set")
        self.discovery = fetch_discovery(
            self.issuer, timeout=self.discovery_timeout, validate_cert=self.validate_server_cert
        )
        # explicit settings win over the discovery document
        self.authorize_url = self.authorize_url or self.discovery["authorization_endpoint"]
        self.token_url = self.token_url or self.discovery["token_endpoint"]
        self.userdata_url = self.userdata_url or self.discovery.get("userinfo_endpoint", "")
        self.jwks_url = self.jwks_url or self.discovery["jwks_uri"]
        if not self.id_token_algorithms:
            offered = self.discovery.get("id_token_signing_alg_values_supported") or ["RS256"]
            self.id_token_algorithms = [a for a in offered if a in ASYMMETRIC_ALGORITHMS]
        if not self.scope:
            supported = set(self.discovery.get("scopes_supported") or [])
            self.scope = ["openid", "profile", "email"] + (["groups"] if "groups" in supported else [])
        self.log.info("OIDC issuer %s: login at %s", self.issuer, self.authorize_url)

    # --- groups ---------------------------------------------------------------------

    def _groups_from_auth_state(self, auth_state: dict) -> list[str]:
        claims = (auth_state or {}).get(self.user_auth_state_key) or {}
        value = claims.get(self.groups_claim)
        if value is None:
            self.log.warning("No %r claim for %s: no groups", self.groups_claim, claims.get("sub"))
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.log.warning("The %r claim is not a list of names: no groups", self.groups_claim)
            return []
        return [g for g in value if isinstance(g, str) and g and "/" not in g]

    # --- login ----------------------------------------------------------------------

    async def authenticate(self, handler: Any, data: Any = None, **kwargs: Any) -> Any:
        state_id = _state_id(handler.get_state_cookie()) if hasattr(handler, "get_state_cookie") else ""
        if not state_id:
            raise web.HTTPError(400, "OAuth state missing from cookies")
        token = _expected_nonce.set(login_nonce(state_id, handler.settings["cookie_secret"]))
        try:
            return await super().authenticate(handler, data, **kwargs)
        finally:
            _expected_nonce.reset(token)

    async def token_to_user(self, token_info: dict) -> dict:
        """The verified id_token's claims, completed by userinfo (whose subject must match).

        At a login the id_token is required and verified with the login's nonce. At an
        identity refresh (no login in progress) userinfo, fetched with the access
        token, is what is read.
        """
        nonce = _expected_nonce.get()
        claims: dict[str, Any] = {}
        if nonce is not None:
            id_token = token_info.get("id_token")
            if not id_token:
                raise web.HTTPError(403, "The identity provider returned no id_token (is 'openid' in the scope?)")
            claims = await self.verify_id_token(id_token, nonce)
        user_info: dict[str, Any] = {}
        if self.userdata_url:
            user_info = await super().token_to_user(token_info)
            if claims and user_info.get("sub") != claims.get("sub"):
                raise web.HTTPError(403, "The userinfo subject differs from the id_token subject")
        for k in ("nonce", "at_hash", "c_hash", "auth_time", "azp", "aud", "iat", "exp", "iss"):
            claims.pop(k, None)
        return {**claims, **user_info}

    async def verify_id_token(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """Check the id_token's signature, issuer, audience, expiry and nonce; 403 on any failure."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as e:
            raise self._refused(f"malformed id_token ({e})") from None
        alg = header.get("alg")
        if alg not in self.id_token_algorithms:
            raise self._refused(f"id_token algorithm {alg!r} is not accepted ({', '.join(self.id_token_algorithms)})")
        key = await self._signing_key(header.get("kid"), alg)
        try:
            claims = jwt.decode(
                id_token,
                key=key,
                algorithms=[alg],
                audience=self.client_id,
                issuer=self.discovery.get("issuer", self.issuer),
                leeway=self.id_token_leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidSignatureError:
            raise self._refused("bad id_token signature") from None
        except jwt.InvalidAudienceError:
            raise self._refused("the id_token is for another client (audience)") from None
        except jwt.InvalidIssuerError:
            raise self._refused("the id_token is from another issuer") from None
        except jwt.ExpiredSignatureError:
            raise self._refused("the id_token has expired") from None
        except jwt.PyJWTError as e:
            raise self._refused(f"invalid id_token ({e})") from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.client_id:
            raise self._refused("the id_token names several audiences but another authorized party")
        if nonce is not None and not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise self._refused("the id_token's nonce does not match this login (replayed or injected)")
        return claims

    def _refused(self, why: str) -> web.HTTPError:
        self.log.warning("OIDC login refused: %s", why)
        return web.HTTPError(403, f"Login refused: {why}")

    async def _signing_key(self, kid: str | None, alg: str) -> Any:
        """The provider's key for `kid`, re-reading the JWKS (at most every 60 s) when it is unknown."""
        key = self._find_key(kid)
        if key is None and time.monotonic() - self._jwks_fetched > 60:
            jwks = await self.httpfetch(self.jwks_url, "Fetching the identity provider's signing keys")
            self._jwks = jwks if isinstance(jwks, dict) else {}
            self._jwks_fetched = time.monotonic()
            key = self._find_key(kid)
        if key is None:
            raise self._refused(f"no signing key {kid!r} at the provider")
        try:
            return jwt.PyJWK.from_dict(key, algorithm=alg).key
        except jwt.PyJWTError as e:
            raise self._refused(f"unusable signing key {kid!r} ({e})") from None

    def _find_key(self, kid: str | None) -> dict | None:
        keys = [k for k in self._jwks.get("keys", []) if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        if kid is None:
            return keys[0] if len(keys) == 1 else None
        return next((k for k in keys if k.get("kid") == kid), None)

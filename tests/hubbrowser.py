"""A cookie-carrying HTTP client that logs in to the hub as a browser does (for session tests).

Each ``HubBrowser`` is one browser: its own cookie jar, hence its own
``jupyterhub-session-id``. ``oauth_token()`` runs the hub's OAuth flow as the
test-admin OAuth client, the way a workspace gets the token in its login cookie:
the token is bound to this browser's session.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import requests
from stack import TEST_ADMIN_SERVICE, TEST_OAUTH_REDIRECT, HubStack

HUB_SESSION_COOKIE = "jupyterhub-session-id"


class HubBrowser:
    def __init__(self, stack: HubStack):
        self.stack = stack
        self.http = requests.Session()
        self.last_login: requests.Response | None = None
        self.base_url = stack.url  # the public URL (the proxy), unless a test asks the hub directly

    @property
    def url(self) -> str:
        return self.base_url

    def login(self, user: str, password: str) -> requests.Response:
        """POST the login form; the answer is not followed (302 on success)."""
        self.http.get(self.url + "/hub/login", timeout=30)
        xsrf = self.http.cookies.get("_xsrf", path="/hub/")
        r = self.http.post(
            self.url + "/hub/login?next=%2Fhub%2Fhome",
            data={"username": user, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=30,
        )
        self.last_login = r
        return r

    def logout(self) -> requests.Response:
        return self.http.get(self.url + "/hub/logout", allow_redirects=False, timeout=30)

    @property
    def session_id(self) -> str | None:
        return self.http.cookies.get(HUB_SESSION_COOKIE)

    def whoami_status(self) -> int:
        """The hub's answer to 'who am I' with this browser's cookies: 200 logged in, 403 not."""
        return self.http.get(self.url + "/hub/api/user", allow_redirects=False, timeout=30).status_code

    def home(self) -> requests.Response:
        return self.http.get(self.url + "/hub/home", allow_redirects=False, timeout=30)

    def copy_cookies(self) -> requests.cookies.RequestsCookieJar:
        return self.http.cookies.copy()

    def oauth_token(self) -> str:
        """An OAuth access token issued to the test-admin client during this browser's session."""
        client_id = f"service-{TEST_ADMIN_SERVICE}"
        r = self.http.get(
            self.url + "/hub/api/oauth2/authorize",
            params={"client_id": client_id, "redirect_uri": TEST_OAUTH_REDIRECT, "response_type": "code"},
            allow_redirects=False,
            timeout=30,
        )
        assert r.status_code == 302 and r.headers["Location"].startswith(TEST_OAUTH_REDIRECT), (
            r.status_code,
            r.text[:300],
        )
        code = parse_qs(urlparse(r.headers["Location"]).query)["code"][0]
        r = requests.post(
            self.url + "/hub/api/oauth2/token",
            data={
                "client_id": client_id,
                "client_secret": self.stack.admin_token,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": TEST_OAUTH_REDIRECT,
            },
            timeout=30,
        )
        assert r.status_code == 200, r.text
        return r.json()["access_token"]


def token_status(stack: HubStack, token: str) -> int:
    """The hub's answer to 'who am I' with a token: 200 valid, 403 revoked."""
    return requests.get(
        stack.url + "/hub/api/user", headers={"Authorization": f"token {token}"}, timeout=30
    ).status_code

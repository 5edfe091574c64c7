"""A small client for ColdFront's REST API plugin (coldfront.plugins.api): PIs, projects, allocations and user
names for the hierarchy DAG.

Why not a library client: there is none for this plugin, and we need exactly three GETs with our own retry policy
(5xx, 429, timeouts and connection errors retry; bad tokens and other 4xx fail at once with a clear message), a
token that never reaches a URL, a log line or a repr, and the raw answers for the archive. No Airflow import: the
core library runs without it.

ColdFront 1.1.10 ships the API unpaginated (plain JSON lists); a site that turns on Django REST framework
pagination answers ``{"count", "next", "previous", "results"}`` pages instead: both are read here.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from .retries import Retry, with_retries

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_PAGES = 10_000  # a loop guard: `next` links that never end


class ColdFrontAuthError(RuntimeError):
    """ColdFront refused the token (401), or its account may not read what was asked (403): retrying cannot help."""


class ColdFrontRequestError(RuntimeError):
    """ColdFront refused a request (4xx other than auth) or answered something that is not the API's JSON."""


class ColdFrontUnavailableError(RuntimeError):
    """ColdFront did not answer usefully after the retries (5xx, 429, timeouts, connection errors)."""


class ColdFrontApi:
    """Read-only access to /api/projects/, /api/allocations/ and /api/users/ with token auth and retries."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        verify: bool | str = True,
        timeout: float = 60,
        retries: int = 4,
        backoff: float = 2.0,
    ) -> None:
        if not token:
            raise ValueError("ColdFrontApi needs an API token (ColdFront: User Profile > API Token)")
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.calls = 0  # HTTP requests sent, retries and pages included
        self.retried = 0  # of which repeated after a 5xx, 429, timeout or connection error
        self.session = requests.Session()
        self.session.verify = verify
        # The only place the token lives: a header of this session (requests never logs headers).
        self.session.headers["Authorization"] = f"Token {token}"
        self.session.headers["Accept"] = "application/json"

    def __repr__(self) -> str:
        return f"ColdFrontApi({self.base_url!r}, calls={self.calls})"

    def projects(self) -> list[dict[str, Any]]:
        """Every project the token's account may see (staff: all), with its attributes, allocations and users."""
        return self._list("/api/projects/", {"project_attributes": "true", "allocations": "true",
                                             "project_users": "true"})  # fmt: skip

    def allocations(self) -> list[dict[str, Any]]:
        """Every allocation the account may see, with its attributes and users."""
        return self._list("/api/allocations/", {"allocation_attributes": "true", "allocation_users": "true"})

    def users(self) -> list[dict[str, Any]]:
        """Usernames with first and last names: the API answers this to staff and superusers only."""
        why = "the token's account must be staff or superuser to read user names (GET /api/users/ is staff-only)"
        return self._list("/api/users/", {}, forbidden=why)

    def fetch_all(self) -> dict[str, Any]:
        """The three lists as the API returned them (for the raw archive), and how many calls it took."""
        before = self.calls
        out: dict[str, Any] = {"projects": self.projects(), "allocations": self.allocations(), "users": self.users()}
        out["calls"] = self.calls - before
        return out

    def _list(self, path: str, params: dict[str, str], *, forbidden: str | None = None) -> list[dict[str, Any]]:
        """All items of a list endpoint: a plain list, or DRF pages followed through ``next``."""
        url: str | None = f"{self.base_url}{path}"
        query: dict[str, str] | None = params
        items: list[dict[str, Any]] = []
        for _page in range(MAX_PAGES):
            if url is None:
                return items
            body = self._get(url, query, forbidden)
            if isinstance(body, list):
                if items:
                    raise ColdFrontRequestError(f"GET {url}: a plain list after paginated pages")
                return body
            if isinstance(body, dict) and isinstance(body.get("results"), list):
                items.extend(body["results"])
                url, query = self._next(body.get("next"), url), None  # `next` carries the query
                continue
            raise ColdFrontRequestError(f"GET {url}: neither a list nor a page of results: {str(body)[:300]}")
        raise ColdFrontRequestError(f"GET {self.base_url}{path}: more than {MAX_PAGES} pages")

    def _next(self, link: Any, current: str) -> str | None:
        """The next page's URL, always on our base URL's scheme and host: the token is never sent elsewhere
        (a proxy that rewrites scheme or host makes ColdFront build links to the wrong origin)."""
        if not link:
            return None
        base, nxt = urlsplit(self.base_url), urlsplit(str(link))
        if (nxt.scheme, nxt.netloc) != (base.scheme, base.netloc):
            log.debug("ColdFront's next link points to %s://%s; following it on %s", nxt.scheme, nxt.netloc,
                      self.base_url)  # fmt: skip
        fixed = urlunsplit((base.scheme, base.netloc, nxt.path, nxt.query, ""))
        if fixed == current:
            raise ColdFrontRequestError(f"GET {current}: the next page is the same page")
        return fixed

    def _get(self, url: str, params: dict[str, str] | None, forbidden: str | None) -> Any:
        def attempt() -> Any:
            self.calls += 1
            try:
                response = self.session.get(url, params=params, timeout=self.timeout, allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as exc:
                return Retry(f"{type(exc).__name__}: {exc}")
            if response.status_code in RETRY_STATUS:
                return Retry(f"HTTP {response.status_code}: {response.text[:300]}")
            return self._decode(response, url, forbidden)

        def count_retry() -> None:
            self.retried += 1

        return with_retries(attempt, retries=self.retries, backoff=self.backoff, label=f"ColdFront GET {url}",
                            give_up=ColdFrontUnavailableError, on_retry=count_retry)  # fmt: skip

    @staticmethod
    def _decode(response: requests.Response, url: str, forbidden: str | None) -> Any:
        status = response.status_code
        if status == 401:
            raise ColdFrontAuthError(f"ColdFront at {url} refused the API token (HTTP 401: {response.text[:200]}); "
                                     "check the token (ColdFront: User Profile > API Token)")  # fmt: skip
        if status == 403:
            why = forbidden or "the token's account may not read this"
            raise ColdFrontAuthError(f"ColdFront at {url} answered 403: {why}")
        if status >= 300:
            where = f" (redirected to {response.headers.get('Location')})" if 300 <= status < 400 else ""
            raise ColdFrontRequestError(f"ColdFront GET {url} failed: HTTP {status}{where}: {response.text[:300]}")
        try:
            return response.json()
        except ValueError as exc:
            raise ColdFrontRequestError(f"ColdFront GET {url}: not JSON (is the API plugin on, PLUGIN_API=True?): "
                                        f"{response.text[:300]}") from exc  # fmt: skip

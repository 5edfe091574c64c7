"""A small Prometheus HTTP API client for OpenShift's Thanos querier (or a plain Prometheus).

Why not a library client: we need exactly two calls, control over retries (5xx and timeouts
retry; a 4xx or a PromQL error fails at once with the server's own message), a bearer token
that never reaches a log, and a record of every query and answer for the raw archive.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from .retries import Retry, with_retries

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class PromQueryError(RuntimeError):
    """Prometheus refused the query (bad PromQL, 4xx): retrying cannot help."""


class PromUnavailableError(RuntimeError):
    """Prometheus did not answer usefully after the retries (5xx, timeouts, connection errors)."""


@dataclass
class QueryStats:
    queries: int = 0
    samples: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"queries": self.queries, "samples": self.samples, "seconds": round(self.seconds, 3),
                "warnings": self.warnings[:20]}  # fmt: skip


def count_samples(result_type: str, result: list[dict[str, Any]]) -> int:
    if result_type == "matrix":
        return sum(len(series.get("values", ())) for series in result)
    return len(result)


class PrometheusApi:
    """GET /api/v1/query and /api/v1/query_range with explicit times, retries and a record of answers."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        verify: bool | str = True,
        timeout: float = 120.0,
        retries: int = 4,
        backoff: float = 2.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.session = requests.Session()
        self.session.verify = verify
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.stats = QueryStats()
        self._lock = threading.Lock()  # queries run side by side

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}{path}"

        def attempt() -> dict[str, Any] | Retry:
            started = time.monotonic()
            try:
                response = self.session.get(url, params=params, timeout=self.timeout)
            except (requests.ConnectionError, requests.Timeout) as exc:
                return Retry(f"{type(exc).__name__}: {exc}")
            with self._lock:
                self.stats.seconds += time.monotonic() - started
            if response.status_code in RETRY_STATUS:
                return Retry(f"HTTP {response.status_code}: {response.text[:300]}")
            return self._decode(response, params)

        return with_retries(attempt, retries=self.retries, backoff=self.backoff, label=url,
                            give_up=PromUnavailableError)  # fmt: skip

    def _decode(self, response: requests.Response, params: dict[str, Any]) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400 or body.get("status") != "success":
            message = body.get("error") or response.text[:300]
            raise PromQueryError(
                f"Prometheus refused the query (HTTP {response.status_code}, {body.get('errorType', 'error')}): "
                f"{message}\nquery: {params.get('query')}"
            )
        data = body["data"]
        with self._lock:
            self.stats.queries += 1
            self.stats.warnings += body.get("warnings", [])
            self.stats.samples += count_samples(data["resultType"], data["result"])
        return data

    def query(self, promql: str, at: float) -> dict[str, Any]:
        """An instant query evaluated at ``at`` (Unix seconds): never Prometheus' "now"."""
        return self._get("/api/v1/query", {"query": promql, "time": f"{at:.3f}", "partial_response": "false"})

    def query_range(self, promql: str, start: float, end: float, step: float) -> dict[str, Any]:
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}",
                  "partial_response": "false"}  # fmt: skip
        return self._get("/api/v1/query_range", params)

    def major_version(self) -> int | None:
        """Prometheus' major version (range selectors changed from [t-r, t] to (t-r, t] in 3.0)."""
        try:
            response = self.session.get(f"{self.base_url}/api/v1/status/buildinfo", timeout=self.timeout)
            return int(str(response.json()["data"]["version"]).split(".")[0])
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return None

"""Python SDK for the management API; the CLI is built on it (like kubectl on the API server)."""

from __future__ import annotations

from typing import Any

import httpx

from loopstack.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LoopstackError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from loopstack.core.settings import Settings

__all__ = ["LoopstackClient"]

_BY_STATUS: dict[int, type[LoopstackError]] = {
    400: InvalidInput,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: InvalidInput,
    503: Unavailable,
}


class LoopstackClient:
    """A thin, typed wrapper over the management API's HTTP endpoints."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopstackClient:
        """Client for the API the settings point at."""
        return cls(settings.api_url, settings.api.token)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> LoopstackClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; raise the Loopstack error matching a non-2xx answer."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            raise Unavailable(
                f"the management API at {self.base_url} is not reachable; start it with `loopstack up`"
                " or set LOOPSTACK_API__URL"
            ) from exc
        except httpx.HTTPError as exc:
            raise Unavailable(f"the management API at {self.base_url} failed: {exc}") from exc
        if response.is_success:
            return response.json() if response.content else None
        try:
            reason = response.json().get("error") or response.text
        except ValueError:
            reason = response.text
        error = _BY_STATUS.get(response.status_code, LoopstackError)
        raise error(f"{reason} (HTTP {response.status_code} from {method} {path})")

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON resource."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        """POST a JSON body."""
        return self.request("POST", path, json=body)

    def health(self) -> dict[str, Any]:
        """The API's `/healthz` answer."""
        result: dict[str, Any] = self.get("/healthz")
        return result

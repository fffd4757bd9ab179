"""Python SDK for the management API; the CLI is built on it (like kubectl on the API server)."""

from __future__ import annotations

import base64
import io
import ssl
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from loopstack.core.errors import (
    ConfigurationError,
    Conflict,
    Forbidden,
    InvalidInput,
    LoopstackError,
    NotFound,
    Unauthorized,
    Unavailable,
)
from loopstack.core.settings import Settings
from loopstack.core.tls import tls_failure

__all__ = ["LoopstackClient"]

IDEMPOTENCY_HEADER = "Idempotency-Key"
_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
"""The request may have reached the API and been applied, but its answer never came back."""

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
    """A thin, typed wrapper over the management API's HTTP endpoints.

    Args:
        base_url: the API's URL (`https://...` when it serves TLS).
        token: bearer token (an API key or a JWT), if the API requires one.
        timeout: seconds per request.
        verify: what an https API must present: an SSL context (a private CA; for mutual TLS
            also this client's certificate) or True for the default CA bundle (certifi).
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        timeout: float = 30.0,
        verify: ssl.SSLContext | bool = True,
        retries: int = 2,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, verify=verify
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LoopstackClient:
        """Client for the API the settings point at, trusting `tls.ca_file` (if set)."""
        https = settings.api_url.startswith("https://")
        verify = settings.client_tls.ssl_context() if https else True
        return cls(settings.api_url, settings.api.token, verify=verify)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> LoopstackClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the API; raise the Loopstack error matching a non-2xx answer.

        A mutating call carries one `Idempotency-Key` (a new UUID unless `headers` holds one);
        when its answer is lost (read timeout, dropped connection) or the first attempt is still
        in progress (409), it is sent again with the same key, up to `retries` times: the API
        applies it once and answers every attempt with the first outcome.
        """
        headers = dict(kwargs.pop("headers", None) or {})
        if method.upper() in _MUTATING:
            headers.setdefault(IDEMPOTENCY_HEADER, str(uuid.uuid4()))
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self._http.request(method, path, headers=headers, **kwargs)
            except _ANSWER_LOST as exc:
                if last:
                    raise self._transport_error(exc) from exc
            except httpx.HTTPError as exc:
                raise self._transport_error(exc) from exc
            else:
                if last or not _in_flight(response):
                    return self._answer(method, path, response)
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _answer(self, method: str, path: str, response: httpx.Response) -> Any:
        """The JSON of a 2xx answer; the Loopstack error of any other."""
        if response.is_success:
            return response.json() if response.content else None
        try:
            reason = response.json().get("error") or response.text
        except ValueError:
            reason = response.text
        error = _BY_STATUS.get(response.status_code, LoopstackError)
        raise error(f"{reason} (HTTP {response.status_code} from {method} {path})")

    def _transport_error(self, exc: httpx.HTTPError) -> LoopstackError:
        """The Loopstack error (and its fix) for a request that got no HTTP answer."""
        if (reason := tls_failure(exc, self.base_url)) is not None:
            return ConfigurationError(reason)
        if isinstance(exc, httpx.ConnectError):
            return Unavailable(
                f"the management API at {self.base_url} is not reachable; start it with `loopstack up`"
                " or set LOOPSTACK_API__URL"
            )
        if isinstance(exc, httpx.RemoteProtocolError):  # what a TLS server does to a misfit
            hint = (
                "if it requires client certificates (mutual TLS), set "
                "LOOPSTACK_TLS__CLIENT_CERT_FILE and LOOPSTACK_TLS__CLIENT_KEY_FILE to one its "
                "client CA signed"
                if self.base_url.startswith("https://")
                else "if it serves TLS, use https:// in LOOPSTACK_API__URL"
            )
            return Unavailable(
                f"the management API at {self.base_url} closed the connection without an "
                f"answer; {hint}"
            )
        return Unavailable(f"the management API at {self.base_url} failed: {exc}")

    def get(self, path: str, **params: Any) -> Any:
        """GET a JSON resource."""
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: Any = None) -> Any:
        """POST a JSON body."""
        return self.request("POST", path, json=body)

    def deploy(
        self,
        model: str,
        version: str,
        *,
        canary: int | None = None,
        shadow: bool = False,
        sticky: bool = False,
        force: bool = False,
    ) -> dict[str, Any]:
        """Deploy a version as champion (a promote), canary or shadow challenger.

        Raises:
            Conflict: a rollout is in flight and `force` is not set (the message names it).
        """
        body = {"version": version, "canary": canary, "shadow": shadow, "sticky": sticky,
                "force": force}  # fmt: skip
        result: dict[str, Any] = self.post(f"/v1/models/{model}/deployments", body)
        return result

    def promote(
        self, model: str, version: str | None = None, reason: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Make a version (default: the challenger) the champion; it answers at once.

        Raises:
            Conflict: a rollout is in flight and `force` is not set (the message names it).
        """
        body = {"version": version, "force": force, **({"reason": reason} if reason else {})}
        result: dict[str, Any] = self.post(f"/v1/models/{model}/promote", body)
        return result

    def register_model(
        self,
        model: str,
        *,
        run_id: str | None = None,
        artifact_path: str = "model",
        uri: str | None = None,
        path: str | Path | None = None,
        as_of: str | None = None,
        holdout: tuple[str, str] | None = None,
        timeout: float = 600.0,
    ) -> dict[str, Any]:
        """Adopt an MLflow model trained outside Loopstack as a new version of `model`.

        Give exactly one source: `run_id` (a run of the stack's MLflow; its model named
        `artifact_path`), `uri` (an MLflow model URI the API reads: `runs:/`, `models:/`, a
        store URL; never a path on its disk) or `path` (a local
        MLflow model folder, uploaded). The answer holds the version, the gate verdict, whether
        it is the challenger now, and its lineage. `holdout`: the (from, to) ISO dates of the
        labelled window the gate holds out from (default: the champion's training window).

        Raises:
            InvalidInput: no signature, missing or extra columns, or an unsupported flavour
                (the message names them and the fix).
            NotFound: no spec for the model, or no model at the source.
        """
        body: dict[str, Any] = {"run_id": run_id, "artifact_path": artifact_path, "uri": uri,
                                "as_of": as_of}  # fmt: skip
        if path is not None:
            body.update(archive=_archive(Path(path)), path=str(Path(path).resolve()))
        if holdout is not None:
            body.update(holdout_from=holdout[0], holdout_to=holdout[1])
        result: dict[str, Any] = self.request(
            "POST", f"/v1/models/{model}/versions", json=body, timeout=timeout
        )
        return result

    def rollback(
        self, model: str, reason: str | None = None, force: bool = False
    ) -> dict[str, Any]:
        """Restore the previous champion; it answers at once.

        Raises:
            Conflict: no previous champion, or a rollout is in flight and `force` is not set.
        """
        body = {"force": force, **({"reason": reason} if reason else {})}
        result: dict[str, Any] = self.post(f"/v1/models/{model}/rollback", body)
        return result

    def apply_features(self, dry_run: bool = False) -> dict[str, Any]:
        """Validate and apply the stack's feature repository; the plan (`changes`, `applied`).

        Raises:
            InvalidInput: the repository holds a definition Feast or the offline engine cannot
                use (a 422 naming the file, the object and the fix); nothing is applied.
        """
        result: dict[str, Any] = self.post("/v1/features/apply", {"dry_run": dry_run})
        return result

    def health(self) -> dict[str, Any]:
        """The API's `/healthz` answer."""
        result: dict[str, Any] = self.get("/healthz")
        return result


def _in_flight(response: httpx.Response) -> bool:
    """Whether the API said the first attempt with this Idempotency-Key is still running."""
    if response.status_code != 409:
        return False
    try:
        return bool(response.json().get("type") == "IdempotencyKeyInFlight")
    except ValueError:
        return False


def _archive(folder: Path) -> str:
    """A local MLflow model folder as the base64 tar.gz the register route takes."""
    if not (folder / "MLmodel").is_file():
        raise InvalidInput(f"{folder} holds no MLmodel file: give the folder of an MLflow model")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(folder, arcname="model")
    return base64.b64encode(buffer.getvalue()).decode("ascii")

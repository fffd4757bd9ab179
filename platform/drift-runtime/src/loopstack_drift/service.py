"""The detector service: keys → fitted detector sets, persisted under a store directory.

The HTTP app only translates requests to these calls; tests drive it without a transport.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopstack_drift import bundle
from loopstack_drift.columns import Schema
from loopstack_drift.detectors import DetectorSet
from loopstack_drift.errors import DetectorNotFound, InvalidRequest
from loopstack_drift.limits import Limits
from loopstack_drift.protocol import check_key, parse_fit, parse_window

__all__ = ["DetectorService"]

logger = logging.getLogger(__name__)


class DetectorService:
    """Fits, scores, packs and loads detector sets; one directory per key under `store`."""

    def __init__(self, store: Path, limits: Limits | None = None) -> None:
        self.store = store
        self.limits = limits or Limits()
        self.store.mkdir(parents=True, exist_ok=True)
        self._sets: dict[str, DetectorSet] = {}
        # Writers replace a key's directory; one lock keeps a reader from loading it half-written.
        self._lock = threading.Lock()

    def fit(self, key: str, body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
        """Fit a key's detectors from a fit body; return their summary and bundle bytes."""
        check_key(key)
        request = parse_fit(body, self.limits)
        schema = Schema.infer(
            request.columns,
            request.features,
            request.categorical,
            request.prediction,
            self.limits,
        )
        x_ref, pred_ref = schema.encode(request.columns, self.limits)
        detectors = DetectorSet.fit(schema, x_ref, pred_ref, request.options)
        with self._lock:
            data = self._install(key, detectors.save)
            self._sets[key] = detectors
        logger.info("fitted %s on %d rows, %d features", key, len(x_ref), len(schema.features))
        return {"key": key, **detectors.summary()}, data

    def score(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Score one window against a key's reference."""
        detectors = self._get(key)
        columns = parse_window(body, self.limits)
        x, pred = detectors.schema.encode(columns, self.limits)
        result = detectors.score(x, pred)
        logger.info(
            "scored %s: %d rows, status %s, drifted %s, %.1f ms",
            key,
            result["n_rows"],
            result["status"],
            result["drifted"],
            result["elapsed_ms"],
        )
        return {"key": key, **result}

    def describe(self, key: str) -> dict[str, Any]:
        """What a key's detectors were fitted on."""
        return {"key": key, **self._get(key).summary()}

    def bundle(self, key: str) -> bytes:
        """A key's detectors as bundle bytes."""
        self._get(key)
        with self._lock:
            return bundle.pack(self.store / key)

    def load(self, key: str, data: bytes) -> dict[str, Any]:
        """Install a bundle (from `bundle` or `fit`) under `key`, replacing what was there."""
        check_key(key)
        with self._lock:
            self._install(
                key,
                lambda directory: bundle.unpack(data, directory, 8 * self.limits.max_body_bytes),
                validate=True,
            )
            detectors = self._sets[key]
        logger.info("loaded %s from a %d-byte bundle", key, len(data))
        return {"key": key, **detectors.summary()}

    def _get(self, key: str) -> DetectorSet:
        check_key(key)
        with self._lock:
            if key not in self._sets:
                # A restarted server serves what an earlier run left in its store.
                directory = self.store / key
                if not directory.is_dir():
                    raise DetectorNotFound(key)
                self._sets[key] = DetectorSet.load(directory)
            return self._sets[key]

    def _install(self, key: str, write: Callable[[Path], None], validate: bool = False) -> bytes:
        """Write into a staging directory, check it loads, swap it in; return its bundle bytes."""
        staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.store))
        try:
            write(staging)
            loaded = None
            if validate:
                try:
                    loaded = DetectorSet.load(staging)
                except Exception as exc:  # whatever breaks, the bundle was bad
                    raise InvalidRequest(f"bundle is not a valid detector bundle: {exc}") from exc
            data = bundle.pack(staging)
            target = self.store / key
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
            if loaded is not None:
                self._sets[key] = loaded
            return data
        finally:
            shutil.rmtree(staging, ignore_errors=True)

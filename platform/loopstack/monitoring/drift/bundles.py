"""Where a version's detectors come from: the bundle the train pipeline logged to MLflow.

`register` logs the bundle of the `fit-detectors` step as the artifact `detectors/bundle.tar.gz`
of the version's run. A version without it (trained before drift detection existed, or by
hand) has no detectors: its traffic is counted, not watched.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loopstack.core.errors import Unavailable

__all__ = [
    "BUNDLE_ARTIFACT",
    "BundleInfo",
    "BundleSource",
    "MlflowBundles",
    "detector_key",
    "read_bundle_info",
]

BUNDLE_ARTIFACT = "detectors/bundle.tar.gz"
"""Artifact path of a version's detector bundle in its MLflow run."""


def detector_key(model: str, version: str) -> str:
    """The detector server key of a model version, e.g. `bike-demand-v3`."""
    key = re.sub(r"[^A-Za-z0-9._-]", "_", f"{model}-v{version}")
    return key[:128]


@dataclass(frozen=True)
class BundleInfo:
    """What the consumer needs from a bundle's `meta.json`: columns and the reference size."""

    features: tuple[str, ...]
    categorical: frozenset[str]
    prediction: str | None
    n_reference: int
    categories: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """Categorical feature -> the reference's categories (`<other>` among them if folded)."""


def read_bundle_info(bundle: bytes) -> BundleInfo:
    """Read `meta.json` of a bundle (PROTOCOL.md: schema features, categories, n_reference)."""
    with tarfile.open(fileobj=io.BytesIO(bundle), mode="r:gz") as tar:
        member = next(m for m in tar.getmembers() if Path(m.name).name == "meta.json")
        handle = tar.extractfile(member)
        assert handle is not None
        meta = json.loads(handle.read())
    schema = meta["schema"]
    categories = schema.get("categories") or {}
    return BundleInfo(
        features=tuple(schema["features"]),
        categorical=frozenset(categories),
        prediction=schema.get("prediction"),
        n_reference=int(meta["n_reference"]),
        categories={name: tuple(values) for name, values in categories.items()},
    )


class BundleSource(Protocol):
    """Fetches a version's detector bundle."""

    def fetch(self, model: str, version: str) -> bytes | None:
        """The bundle, or None if the version has no detectors.

        Raises:
            Unavailable: the registry could not be asked (retry later).
        """


class MlflowBundles:
    """Bundles from the MLflow registry: artifact `detectors/bundle.tar.gz` of the version's run."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri

    def fetch(self, model: str, version: str) -> bytes | None:
        """The version's bundle, None when the version or its bundle does not exist."""
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        try:
            run_id = client.get_model_version(model, version).run_id
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                return None
            raise Unavailable(f"MLflow at {self.tracking_uri} failed: {exc}") from exc
        except Exception as exc:  # connection refused, timeouts: retried later
            raise Unavailable(f"MLflow at {self.tracking_uri} is unreachable: {exc}") from exc
        if not run_id:
            return None
        try:
            listed = {a.path for a in client.list_artifacts(run_id, "detectors")}
            if BUNDLE_ARTIFACT not in listed:
                return None
            with tempfile.TemporaryDirectory() as tmp:
                path = client.download_artifacts(run_id, BUNDLE_ARTIFACT, tmp)
                return Path(path).read_bytes()
        except Exception as exc:
            raise Unavailable(f"reading {BUNDLE_ARTIFACT} of run {run_id} failed: {exc}") from exc

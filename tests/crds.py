"""Validate rendered custom resources against the upstream CRDs in `../shared/crds/`.

The CRD folder is configurable (`LOOPSTACK_KUBERNETES__CRDS_DIR`). Without it the checks skip
with a message naming that setting; under CI (`CI=true`) they fail instead.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from loopstack.core.settings import load_settings

__all__ = ["crds_dir", "validate_custom_resource"]


def crds_dir() -> Path:
    """The CRD folder; skip (or fail under CI) when it is absent."""
    path = load_settings(project_dir=Path(__file__).resolve().parents[1]).crds_path
    if not path.is_dir():
        message = (
            f"upstream CRDs not found at {path}: set LOOPSTACK_KUBERNETES__CRDS_DIR to the folder "
            "holding them (e.g. ../shared/crds)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@cache
def _schemas(folder: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for file in sorted(Path(folder).glob("*.yaml")):
        for doc in yaml.load_all(file.read_text(), Loader=yaml.CSafeLoader):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                api_version = f"{spec['group']}/{version['name']}"
                found[(api_version, spec["names"]["kind"])] = version["schema"]["openAPIV3Schema"]
    return found


@cache
def _validator(folder: str, key: tuple[str, str]) -> jsonschema.protocols.Validator:
    schema = _schemas(folder)[key]
    return jsonschema.validators.validator_for(schema)(schema)


def _unknown_fields(obj: Any, schema: dict[str, Any], path: str) -> list[str]:
    """Fields the API server would reject: CRD schemas rarely say additionalProperties: false."""
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(obj, dict | list):
        return []
    if isinstance(obj, list):
        items = schema.get("items", {})
        return [e for i, o in enumerate(obj) for e in _unknown_fields(o, items, f"{path}[{i}]")]
    props = schema.get("properties")
    if props is None:
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return [e for k, v in obj.items() for e in _unknown_fields(v, extra, f"{path}.{k}")]
        return []
    errors = [f"{path}.{k}" for k in obj if k not in props]
    return errors + [
        e for k, v in obj.items() if k in props for e in _unknown_fields(v, props[k], f"{path}.{k}")
    ]


def validate_custom_resource(obj: dict[str, Any]) -> None:
    """Assert `obj` is valid for its CRD: schema-valid and no unknown fields."""
    schemas = _schemas(str(crds_dir()))
    key = (obj["apiVersion"], obj["kind"])
    assert key in schemas, f"no CRD for {key} in {crds_dir()}"
    schema = schemas[key]
    errors = sorted(_validator(str(crds_dir()), key).iter_errors(obj), key=lambda e: e.path)
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    unknown = [u for u in _unknown_fields(obj, schema, "") if not u.startswith(".metadata.")]
    assert not unknown, f"{obj['kind']} {obj['metadata'].get('name')}: unknown fields {unknown}"

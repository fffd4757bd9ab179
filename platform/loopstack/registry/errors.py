"""Errors of the model registry."""

from __future__ import annotations

from loopstack.core.errors import Conflict, NotFound, Unavailable

__all__ = [
    "ModelNotRegistered",
    "VersionNotFound",
    "AliasNotSet",
    "NoPreviousChampion",
    "RegistryUnavailable",
]


class ModelNotRegistered(NotFound):
    """No registered model has this name: train one with `loopstack pipeline run train --model M`."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} has no registered versions; train it with "
            f"`loopstack pipeline run train --model {model}`"
        )


class VersionNotFound(NotFound):
    """The model has no such version: list them with `loopstack models show M`."""

    def __init__(self, model: str, version: str) -> None:
        super().__init__(
            f"model {model!r} has no version {version!r}; list versions with `loopstack models show {model}`"
        )


class AliasNotSet(NotFound):
    """The alias points nowhere yet."""

    def __init__(self, model: str, alias: str) -> None:
        super().__init__(
            f"model {model!r} has no {alias!r} alias yet; "
            + (
                "promote a version with `loopstack models promote`"
                if alias == "champion"
                else "train a version that passes the gate"
            )
        )


class NoPreviousChampion(Conflict):
    """Rollback needs a champion before the current one."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} has no previous champion to roll back to; "
            f"promote a specific version with `loopstack models promote {model} --version V`"
        )


class RegistryUnavailable(Unavailable):
    """MLflow does not answer."""

    def __init__(self, uri: str, detail: str) -> None:
        super().__init__(
            f"MLflow at {uri} is not reachable ({detail}); start it with `loopstack up`"
        )

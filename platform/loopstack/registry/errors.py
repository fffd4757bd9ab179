"""Errors of the model registry."""

from __future__ import annotations

from loopstack.core.errors import Conflict, InvalidInput, NotFound, Unavailable

__all__ = [
    "ModelNotRegistered",
    "VersionNotFound",
    "AliasNotSet",
    "NoPreviousChampion",
    "RegistryUnavailable",
    "ModelSourceNotFound",
    "UnsupportedFlavour",
    "NoSignature",
    "SignatureMismatch",
    "ClassesMismatch",
]


class ModelNotRegistered(NotFound):
    """No registered model has this name: train one with `loopstack pipeline run train --model M`."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"model {model!r} has no registered versions; train it with "
            f"`loopstack pipeline run train --model {model}`, or adopt one trained elsewhere "
            f"with `loopstack models register {model} --run ID`"
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
            f"MLflow at {uri} is not answering ({detail}); start it with `loopstack up` "
            "(`loopstack status` shows whether it runs), or set LOOPSTACK_MLFLOW__TRACKING_URI"
        )


class ModelSourceNotFound(NotFound):
    """The run, URI or folder named to adopt holds no MLflow model."""

    def __init__(self, source: str, detail: str) -> None:
        super().__init__(
            f"no MLflow model at {source} ({detail}); name the run whose model to adopt "
            "(`--run ID`, artifact path `model`), a model URI, or a folder holding an MLmodel file"
        )


class UnsupportedFlavour(InvalidInput):
    """The model has no flavour Loopstack serves for the spec's task."""

    def __init__(self, source: str, flavours: list[str], fix: str) -> None:
        super().__init__(f"the model at {source} has flavours {flavours}; {fix}")


class NoSignature(InvalidInput):
    """A model without a signature cannot be checked against the spec or served."""

    def __init__(self, source: str) -> None:
        super().__init__(
            f"the model at {source} has no signature: log it again with one, e.g. "
            "`mlflow.sklearn.log_model(model, name='model', "
            "signature=mlflow.models.infer_signature(X, model.predict(X)))` with X a DataFrame "
            "of the spec's inputs"
        )


class SignatureMismatch(InvalidInput):
    """The model's input columns are not the ones the spec provides."""

    def __init__(self, source: str, model: str, missing: list[str], extra: list[str]) -> None:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing} the spec of {model!r} provides")
        if extra:
            parts.append(
                f"extra column(s) {extra} that are neither request fields nor features of {model!r}"
            )
        super().__init__(
            f"the signature of the model at {source} does not match the spec: "
            + "; ".join(parts)
            + "; fit and log the model on exactly the spec's inputs, or change the spec's "
            "request_fields / feature service"
        )


class ClassesMismatch(InvalidInput):
    """A classifier's classes are not the ones its spec lists."""

    def __init__(self, source: str, model: str, found: list[object], spec: list[object]) -> None:
        super().__init__(
            f"the classifier at {source} predicts classes {found}, but the spec of {model!r} "
            f"lists {spec}; fit it on the spec's classes or change `classes` in the spec"
        )

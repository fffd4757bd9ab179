"""`loopstack init DIR [--model NAME] [--force]`: scaffold a project the stack runs on (offline).

The project holds everything the stack needs: `models/<name>/` (spec and estimator),
`feature_repo/` (Feast definitions and data), `loopstack.yaml`; the built-in pipelines and the
drift runtime come with the package. The example model works as written, on scikit-learn's
diabetes data set, so `up`, `train`, `predict` and `feedback` can be tried before it is edited.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from loopstack.cli.output import console, fail_on_errors
from loopstack.core.errors import InvalidInput

__all__ = ["init", "scaffold"]

SCAFFOLD = Path(__file__).resolve().parent / "scaffold"
FACTS_TIME = datetime(2020, 1, 1, tzinfo=UTC)
"""When the example's patient facts are dated (its materialize window surrounds it)."""
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def _identifier(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower()).strip("_") or "project"


def _render(template: Path, values: dict[str, str]) -> str:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _target(template: Path, model: str, ident: str) -> Path:
    relative = template.relative_to(SCAFFOLD)
    parts = [model if p == "MODEL" else p for p in relative.parent.parts]
    name = relative.name.removesuffix(".tmpl")
    name = {"gitignore": ".gitignore", "MODEL.py": f"{ident}.py"}.get(name, name)
    return Path(*parts, name)


def _write_example_data(data_dir: Path, ident: str, today: datetime) -> int:
    """The diabetes rows as label rows dated one a day up to yesterday, and the facts."""
    import pandas as pd
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    n = len(frame)
    first = (today - timedelta(days=n)).replace(hour=0, minute=0, second=0, microsecond=0)
    ids = [f"p-{i}" for i in range(n)]
    labels = pd.DataFrame(
        {
            "patient_id": ids,
            "event_timestamp": pd.date_range(first, periods=n, freq="D", tz="UTC"),
            **{c: frame[c].astype("float64") for c in ("bp", "s1", "s2", "s3", "s4", "s5", "s6")},
            "progression": frame["target"].astype("float64"),
        }
    )
    facts = pd.DataFrame(
        {
            "patient_id": ids,
            "event_timestamp": pd.Timestamp(FACTS_TIME),
            **{c: frame[c].astype("float64") for c in ("age", "sex", "bmi")},
        }
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    labels.to_parquet(data_dir / f"{ident}_labels.parquet", index=False)
    facts.to_parquet(data_dir / "patient_facts.parquet", index=False)
    return n


def scaffold(folder: Path, model: str, force: bool = False) -> list[Path]:
    """Write the project into `folder`; the files written.

    Raises:
        InvalidInput: `folder` is not empty (without `force`), or `model` is not a valid name.
    """
    if not _NAME.match(model):
        raise InvalidInput(
            f"model name {model!r} is not valid: use lower-case letters, digits and dashes, "
            "starting with a letter (e.g. `churn-risk`)"
        )
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(f"{folder} is a file: name a new or empty folder")
    if folder.is_dir() and any(folder.iterdir()) and not force:
        raise InvalidInput(
            f"{folder} is not empty: name a new or empty folder, or pass --force to write the "
            "project's files into it (files of the same name are overwritten)"
        )
    ident = _identifier(model)
    values = {"model": model, "ident": ident, "project": _identifier(folder.resolve().name)}
    written = []
    for template in sorted(SCAFFOLD.rglob("*.tmpl")):
        path = folder / _target(template, model, ident)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(template, values))
        written.append(path)
    _write_example_data(folder / "feature_repo" / "data", ident, datetime.now(UTC))
    return written


def init(
    folder: Annotated[Path, typer.Argument(help="Project folder to create (new or empty)")],
    model: Annotated[str, typer.Option(help="Name of the example model")] = "diabetes",
    force: Annotated[bool, typer.Option(help="Write into a non-empty folder")] = False,
) -> None:
    """Scaffold a project in FOLDER: a working example model, its Feast repository and data."""
    with fail_on_errors():
        scaffold(folder, model, force)
    console.print(f"created the project in {folder} with the example model [bold]{model}[/]")
    console.print(
        f"next: cd {folder} && loopstack up  (the guide: docs/own-model.md of Loopstack)",
        highlight=False,
    )

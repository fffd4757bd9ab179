"""Typed configuration: sources, precedence, paths, and the README's generated table."""

from __future__ import annotations

from pathlib import Path

import pytest
from loopstack.core.settings import Settings
from loopstack.core.settings_doc import README_BEGIN, README_END, settings_table
from pydantic import ValidationError

PROJECT_DIR = Path(__file__).resolve().parents[2]


def test_defaults_bind_loopback_and_use_the_embedded_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LOOPSTACK_CONFIG", raising=False)
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert settings.backend == "embedded"
    assert settings.api_url == "http://127.0.0.1:8700"
    assert settings.mlflow_tracking_uri == "http://127.0.0.1:8701"


def test_environment_overrides_yaml_file_which_overrides_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "loopstack.yaml"
    config.write_text("backend: kubernetes\nmlflow:\n  port: 9001\napi:\n  port: 9002\n")
    monkeypatch.setenv("LOOPSTACK_CONFIG", str(config))
    monkeypatch.setenv("LOOPSTACK_API__PORT", "9100")
    settings = Settings()
    assert settings.backend == "kubernetes"
    assert settings.mlflow.port == 9001
    assert settings.api.port == 9100


def test_unknown_and_mistyped_settings_are_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "loopstack.yaml"
    config.write_text("mlflow:\n  prot: 9001\n")
    monkeypatch.setenv("LOOPSTACK_CONFIG", str(config))
    with pytest.raises(ValidationError, match="prot"):
        Settings()
    monkeypatch.delenv("LOOPSTACK_CONFIG")
    with pytest.raises(ValidationError, match="backend"):
        Settings(backend="docker")  # type: ignore[arg-type]


def test_paths_resolve_against_the_project_dir(tmp_path: Path) -> None:
    settings = Settings(project_dir=tmp_path)
    assert settings.state_path == tmp_path / ".loopstack"
    assert settings.models_dir == tmp_path / "models"
    assert settings.feature_repo_dir == tmp_path / "feature_repo"
    assert Settings(project_dir=tmp_path, state_dir=Path("/var/x")).state_path == Path("/var/x")


def test_readme_configuration_table_matches_the_settings_model() -> None:
    readme = (PROJECT_DIR / "README.md").read_text()
    assert README_BEGIN in readme and README_END in readme, "README lacks the config-table markers"
    documented = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0].strip()
    assert documented == settings_table(), (
        "README configuration table is out of date: regenerate it with `make readme`"
    )


def test_every_setting_has_a_description() -> None:
    for line in settings_table().splitlines()[2:]:
        assert line.rstrip(" |").split("|")[-1].strip(), f"undocumented setting: {line}"

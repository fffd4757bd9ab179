"""TLS settings: checked at load with the setting and the fix named; paths resolve; URLs turn https."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from loopstack.core.errors import ConfigurationError
from loopstack.core.settings import Settings, TlsSettings

from tests.conftest import PROJECT_DIR, run_cli
from tests.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _load(**tls: Path) -> Settings:
    return Settings(tls=TlsSettings(**tls))


def test_a_certificate_turns_the_api_and_inference_urls_to_https(pki: Pki) -> None:
    plain = Settings()
    assert plain.server_tls is None and plain.api_url.startswith("http://")
    settings = _load(cert_file=pki.cert, key_file=pki.key, ca_file=pki.ca)
    assert settings.api_url == f"https://127.0.0.1:{settings.api.port}"
    assert settings.server_url(settings.serving.rest_port).startswith("https://")
    assert settings.server_tls is not None and not settings.server_tls.mutual
    assert settings.server_tls.uvicorn_options() == {
        "ssl_certfile": str(pki.cert),
        "ssl_keyfile": str(pki.key),
    }
    mutual = _load(cert_file=pki.cert, key_file=pki.key, client_ca_file=pki.ca)
    assert mutual.server_tls is not None and mutual.server_tls.mutual
    assert mutual.server_tls.uvicorn_options()["ssl_ca_certs"] == str(pki.ca)


def test_relative_paths_resolve_against_the_project_dir_in_children_too(
    pki: Pki, tmp_path: Path
) -> None:
    for path in (pki.cert, pki.key, pki.ca):
        shutil.copy(path, tmp_path / path.name)
    settings = Settings(
        project_dir=tmp_path,
        tls=TlsSettings(cert_file=Path("server.crt"), key_file=Path("server.key"),
                        ca_file=Path("ca.crt")),
    )  # fmt: skip
    assert settings.server_tls is not None
    assert settings.server_tls.cert_file == tmp_path / "server.crt"
    assert settings.client_tls.ca_file == tmp_path / "ca.crt"
    saved = dict(os.environ)
    try:
        os.environ.update(settings.as_env())  # what a child process of the stack receives
        child = Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert child.server_tls == settings.server_tls
    assert child.client_tls == settings.client_tls


@pytest.mark.parametrize(
    ("given", "named"),
    [
        (
            {"cert_file": "cert"},
            "LOOPSTACK_TLS__CERT_FILE is set but LOOPSTACK_TLS__KEY_FILE is not",
        ),
        ({"key_file": "key"}, "LOOPSTACK_TLS__KEY_FILE is set but LOOPSTACK_TLS__CERT_FILE is not"),
        ({"client_cert_file": "client_cert"}, "LOOPSTACK_TLS__CLIENT_KEY_FILE is not"),
        ({"client_ca_file": "ca"}, "LOOPSTACK_TLS__CLIENT_CA_FILE (mutual TLS) needs a server"),
        ({"cert_file": "cert", "key_file": "client_key"}, "do not load as a certificate and its"),
        ({"ca_file": "key"}, "LOOPSTACK_TLS__CA_FILE does not load as a PEM CA bundle"),
    ],
)
def test_unusable_tls_settings_fail_at_load_naming_the_setting(
    pki: Pki, given: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigurationError, match="invalid TLS configuration") as refused:
        _load(**{field: getattr(pki, attr) for field, attr in given.items()})
    assert named in refused.value.message


def test_a_missing_file_is_named_with_its_path(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        _load(cert_file=pki.cert, key_file=tmp_path / "nowhere.key")
    assert f"LOOPSTACK_TLS__KEY_FILE={tmp_path / 'nowhere.key'} is not a file" in str(refused.value)


def test_the_cli_reports_a_bad_tls_setting_as_one_line_and_exit_2(pki: Pki, tmp_path: Path) -> None:
    env = {**os.environ, "LOOPSTACK_PROJECT_DIR": str(PROJECT_DIR),
           "LOOPSTACK_STATE_DIR": str(tmp_path / "state"),
           "LOOPSTACK_TLS__CERT_FILE": str(pki.cert)}  # fmt: skip
    done = run_cli(env, "up")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "LOOPSTACK_TLS__KEY_FILE is not" in done.stderr
    assert "Traceback" not in done.stderr
    # Mutual TLS refuses the stack's own health checks unless they present a certificate.
    mutual = {**env, "LOOPSTACK_TLS__KEY_FILE": str(pki.key),
              "LOOPSTACK_TLS__CLIENT_CA_FILE": str(pki.ca)}  # fmt: skip
    done = run_cli(mutual, "up")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "LOOPSTACK_TLS__CLIENT_CERT_FILE" in done.stderr
    assert not (tmp_path / "state" / "run").exists()  # nothing was started

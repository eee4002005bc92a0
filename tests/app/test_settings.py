"""app.settings: defaults, the environment, and what production mode refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.settings import Settings


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("DATA_DIR", "DATABASE_URL", "ORGANIZER_TOKEN", "DISPATCHER", "WORKERS"):
        monkeypatch.delenv(f"HECKTOR_{k}", raising=False)
    s = Settings()
    assert s.data_dir == (tmp_path / "hecktor-data").resolve()
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'hecktor-data' / 'hecktor.db'}"
    assert s.max_upload_bytes == 2 << 30 and s.daily_limit == 5 and s.dispatcher == "local"
    assert s.organizer_token is None and s.n_workers >= 1
    monkeypatch.setenv("HECKTOR_ORGANIZER_TOKEN", "x" * 40)
    monkeypatch.setenv("HECKTOR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("HECKTOR_WORKERS", "3")
    s = Settings()
    assert isinstance(s.organizer_token, SecretStr) and "x" * 40 not in repr(s)
    assert s.data_dir == tmp_path / "d" and s.n_workers == 3
    assert Settings.from_dict(s.to_dict()).organizer_token.get_secret_value() == "x" * 40  # type: ignore[union-attr]
    monkeypatch.setenv("HECKTOR_DISPATCHER", "kafka")
    with pytest.raises(ValidationError):
        Settings()


def test_production_refuses_a_short_organizer_token() -> None:
    with pytest.raises(ValidationError, match="shorter than 32"):
        Settings(_env_file=None, mode="production", organizer_token="short")  # type: ignore[call-arg]

"""Production mode refuses what would make the service unsafe: a public URL that is not
https with a real host, an organizer token without real entropy, limits of 0 (= none), a
Redis broker without a password; the CLI says so without a traceback, and
``admin init`` never prints the database password."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from app.cli import main
from app.settings import Settings

GOOD_TOKEN = "Zq3vN8-Lw0pXr5Tb2Ye7Hc1Uj6Mk9Fa4Gd_SsQiOoWl"  # a token_urlsafe(32)
FIX = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def production(**kw: Any) -> Settings:
    values: dict[str, Any] = {
        "mode": "production",
        "organizer_token": GOOD_TOKEN,
        "public_url": "https://challenge.example.org",
    }
    values.update(kw)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("HTTP://challenge.example.org", "has 'http' where https is needed in production"),
        ("http://challenge.example.org", "has 'http' where https is needed in production"),
        ("ftp://challenge.example.org", "has 'ftp' where https is needed"),
        ("http://127.0.0.1.evil", "has 'http' where https is needed"),
        ("http://127.0.0.1:8000", "has 'http' where https is needed"),
        ("challenge.example.org", "has no scheme where https is needed"),
        ("https://", "has no host"),
        ("https://localhost:8443", "is local (localhost), for development only"),
        ("https://127.0.0.1", "is a local address (127.0.0.1)"),
        ("https://[::1]/", "is a local address (::1)"),
        ("https://0.0.0.0", "is a local address"),
        ("https://intranet", "'intranet' is not a host name"),
        ("https://exa_mple.org", "is not a host name"),
        ("https://-bad.example.org", "is not a host name"),
        ("https://challenge.example.org:99999", "is not a URL (Port out of range"),
        ("https://admin:pw@challenge.example.org", "must not carry a user name or password"),
        ("https://challenge.example.org/?token=x", "must not have a query or a fragment"),
    ],
)
def test_production_refuses_a_public_url_that_is_not_https_with_a_real_host(
    url: str, message: str
) -> None:
    with pytest.raises(ValidationError, match="unsafe production settings") as info:
        production(public_url=url)
    text = str(info.value)
    assert message in text and "e.g. HECKTOR_PUBLIC_URL=https://challenge.example.org" in text


@pytest.mark.parametrize(
    "url",
    [
        "https://challenge.example.org",
        "https://challenge.example.org:8443/hecktor/",
        "https://203.0.113.7",
        "https://[2001:db8::7]:8443",
        "https://xn--bcher-kva.example",
    ],
)
def test_production_accepts_https_with_a_dotted_name_or_an_ip(url: str) -> None:
    assert production(public_url=url).public_url == url


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://localhost:8000", "https://localhost"]
)
def test_development_accepts_local_addresses(url: str) -> None:
    assert Settings(_env_file=None, public_url=url).public_url == url  # type: ignore[call-arg]


@pytest.mark.parametrize("url", ["ftp://example.org", "not a url", "http://"])
def test_development_still_needs_an_http_url(url: str) -> None:
    with pytest.raises(ValidationError, match="HECKTOR_PUBLIC_URL"):
        Settings(_env_file=None, public_url=url)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("a" * 32, "an estimated 0 bits of entropy"),
        ("a" * 64, "an estimated 0 bits of entropy"),
        ("ab" * 20, "an estimated 40 bits of entropy"),
        ("01234567" * 5, "an estimated 120 bits of entropy"),  # 40 chars x 3 bits
        ("short-but-random-Xy7", "is 20 characters long (shorter than 32)"),
    ],
)
def test_production_refuses_tokens_without_real_entropy(token: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        production(organizer_token=token)
    text = str(info.value)
    assert "HECKTOR_ORGANIZER_TOKEN" in text and message in text, text
    assert "at least 32 characters and an estimated 128 bits" in text and FIX in text
    assert token not in text  # the refused secret is not echoed


def test_generated_tokens_pass_with_a_wide_margin() -> None:
    from app.settings import secret_bits

    # the fix the message gives always passes: 2000 tokens, the weakest above 170 bits
    weakest = min(secret_bits(secrets.token_urlsafe(32)) for _ in range(2000))
    assert weakest > 170
    assert secret_bits(secrets.token_hex(32)) > 128
    production(organizer_token=secrets.token_urlsafe(32))


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("job_timeout_seconds", "HECKTOR_JOB_TIMEOUT_SECONDS"),
        ("job_memory_mb", "HECKTOR_JOB_MEMORY_MB"),
        ("auth_failure_limit", "HECKTOR_AUTH_FAILURE_LIMIT"),
        ("retention_interval", "HECKTOR_RETENTION_INTERVAL"),
    ],
)
def test_production_refuses_limits_of_zero(name: str, env: str) -> None:
    with pytest.raises(ValidationError, match=f"{env} is 0, which means no limit"):
        production(**{name: 0})
    assert Settings(_env_file=None, **{name: 0})  # type: ignore[call-arg]  # development: fine


def test_production_celery_needs_a_redis_password() -> None:
    with pytest.raises(ValidationError, match="HECKTOR_BROKER_URL has no password"):
        production(dispatcher="celery", broker_url="redis://redis:6379/0")
    s = production(dispatcher="celery", broker_url="redis://:s3cret-pw@redis:6379/0")
    assert s.dispatcher == "celery"


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ValidationError) as info:
        production(organizer_token="a" * 40, public_url="http://x.org", job_memory_mb=0)
    text = str(info.value)
    assert "HECKTOR_PUBLIC_URL" in text and "HECKTOR_ORGANIZER_TOKEN" in text
    assert "HECKTOR_JOB_MEMORY_MB" in text


def test_cli_refuses_unsafe_production_settings_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HECKTOR_MODE", "production")
    monkeypatch.setenv("HECKTOR_ORGANIZER_TOKEN", "a" * 40)
    monkeypatch.setenv("HECKTOR_PUBLIC_URL", "http://127.0.0.1.evil")
    monkeypatch.chdir(tmp_path)  # no .env from the working folder
    with pytest.raises(SystemExit) as info:
        main(["admin", "--data-dir", str(tmp_path / "d"), "init"])
    assert info.value.code == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "a" * 40 not in out + err
    assert err.startswith("error: invalid settings: unsafe production settings:")
    assert "HECKTOR_PUBLIC_URL 'http://127.0.0.1.evil' has 'http'" in err and FIX in err


def test_admin_init_never_prints_the_database_password(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    # the test PostgreSQL trusts every local connection, so any password gets in
    url = pg_database.replace("postgres@", "postgres:Pg-Pa55word-xyz@")
    monkeypatch.chdir(tmp_path)
    base = ["admin", "--data-dir", str(tmp_path / "d"), "--database-url", url, "init"]
    for argv in ([], [], ["--rotate-token"]):  # new, already initialised, rotated
        code = main([*base, *argv])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "Pg-Pa55word-xyz" not in out + err
        assert "database:    postgresql+psycopg://postgres:***@127.0.0.1:5432/" in out

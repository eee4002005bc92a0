"""One settings object for the service, read from ``HECKTOR_*`` environment variables.

Every setting has a safe default for the embedded mode (SQLite in the data folder,
local process pool). A ``.env`` file in the working folder is read too.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

GIB = 1 << 30
MIN_SECRET_CHARS = 32
MIN_SECRET_BITS = 128
# settings where 0 means "no limit" or "off", refused in production: what 0 would mean
NO_LIMIT_WHEN_ZERO = {
    "job_timeout_seconds": "no time limit for a job",
    "job_memory_mb": "no memory limit for a job",
    "auth_failure_limit": "no limit on token guessing",
    "retention_interval": "uploads of failed submissions and dry runs are kept forever",
}
_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_LOCAL_NAMES = ("localhost", "localhost.localdomain")


def secret_bits(secret: str) -> float:
    """Estimated entropy of ``secret`` in bits: its length times the Shannon entropy of
    its character frequencies (``'a' * 32`` has 0 bits, a ``token_urlsafe(32)`` about 200)."""
    n = len(secret)
    if n == 0:
        return 0.0
    per_char = -sum(c / n * math.log2(c / n) for c in Counter(secret).values())
    return max(0.0, n * per_char)  # never -0.0


def weak_secret(secret: str) -> str | None:
    """Why ``secret`` is too weak to guard a production service, or None."""
    if len(secret) < MIN_SECRET_CHARS:
        return f"is {len(secret)} characters long (shorter than {MIN_SECRET_CHARS})"
    bits = secret_bits(secret)
    if bits < MIN_SECRET_BITS:
        return (
            f"has an estimated {bits:.0f} bits of entropy (less than {MIN_SECRET_BITS}: "
            "too few distinct characters or too many repeats)"
        )
    return None


def public_url_problems(url: str, *, production: bool) -> Iterator[str]:
    """What is wrong with ``url`` as the service's public address (nothing: fine).

    It must be ``https://<host>[:port][/path]`` in production, where the host is a
    dotted DNS name or an IP address that is not loopback; ``http://`` and local names
    such as ``localhost`` are accepted in development only."""
    fix = "e.g. HECKTOR_PUBLIC_URL=https://challenge.example.org"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port that is not a number)
    except ValueError as exc:
        yield f"HECKTOR_PUBLIC_URL {url!r} is not a URL ({exc}); {fix}"
        return
    allowed = ("https",) if production else ("http", "https")
    if parts.scheme not in allowed:
        found = f"{parts.scheme!r}" if parts.scheme else "no scheme"
        yield (
            f"HECKTOR_PUBLIC_URL {url!r} has {found} where {' or '.join(allowed)} is needed"
            + (" in production (the TLS proxy's address)" if production else "")
            + f"; {fix}"
        )
        return
    host = parts.hostname or ""
    if parts.username is not None or parts.password is not None:
        yield f"HECKTOR_PUBLIC_URL {url!r} must not carry a user name or password; {fix}"
    if parts.query or parts.fragment:
        yield f"HECKTOR_PUBLIC_URL {url!r} must not have a query or a fragment; {fix}"
    if not host:
        yield f"HECKTOR_PUBLIC_URL {url!r} has no host; {fix}"
        return
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        if production and (ip.is_loopback or ip.is_unspecified):
            yield (
                f"HECKTOR_PUBLIC_URL {url!r} is a local address ({host}); production needs the "
                f"address teams reach the service at; {fix}"
            )
        return
    if host in _LOCAL_NAMES:
        if production:
            yield f"HECKTOR_PUBLIC_URL {url!r} is local ({host}), for development only; {fix}"
        return
    labels = host.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        yield (
            f"HECKTOR_PUBLIC_URL {url!r}: {host!r} is not a host name (dotted DNS labels of "
            f"letters, digits and '-') nor an IP address; {fix}"
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="HECKTOR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    mode: Literal["development", "production"] = "development"
    data_dir: Path = Path("./hecktor-data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default sqlite:///<data_dir>/hecktor.db"
    )
    organizer_token: SecretStr | None = None
    dispatcher: Literal["local", "celery"] = "local"
    workers: int = Field(default=0, ge=0, description="judging processes; 0 = one per core")
    max_upload_bytes: int = Field(default=2 * GIB, gt=0)
    daily_limit: int = Field(default=5, ge=0, description="default per team, phase, task and day")
    refuse_duplicates: bool = Field(
        default=True,
        description="refuse an upload byte-identical to an earlier (not failed) submission "
        "of the team for that phase and task, before it takes a quota slot",
    )
    progress_interval: float = Field(default=0.5, ge=0.0, description="seconds between writes")
    job_timeout_seconds: int = Field(
        default=1800, ge=0, description="wall time per job (in its own process); 0 = no limit"
    )
    job_memory_mb: int = Field(
        default=8192, ge=0, description="address space (RLIMIT_AS) per job, in MB; 0 = no limit"
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker (dispatcher=celery)"
    )
    celery_queue: str = Field(default="hecktor-judge", min_length=1)
    algorithm_queue: str = Field(
        default="hecktor-algorithms",
        min_length=1,
        description="Celery queue of algorithm submissions (workers that run containers)",
    )
    container_runtime: Literal["auto", "podman", "docker", "none"] = Field(
        default="auto",
        description="runtime of participants' algorithm containers; auto: podman, else docker",
    )
    container_image_store: int = Field(
        default=4,
        ge=1,
        description="participants' images loaded at once on this machine at most",
    )
    broker_key_prefix: str = Field(
        default="", description="prefix of every Redis key of the broker (to share a Redis)"
    )
    broker_visibility_timeout: int = Field(
        default=0,
        ge=0,
        description="seconds before an unacknowledged job is re-delivered (must exceed the job "
        "time limit); 0 = job_timeout_seconds + 10 min",
    )
    broker_restore_interval: int = Field(
        default=10, ge=1, description="seconds between a worker's looks for jobs to re-deliver"
    )
    sweep_interval: float = Field(
        default=10.0, ge=0.0, description="seconds between looks for queued rows; 0 = off"
    )
    retention_interval: float = Field(
        default=3600.0,
        ge=0.0,
        description="seconds between passes deleting the expired uploads of failed "
        "submissions and dry runs (also one at start-up); 0 = off",
    )
    retention_batch: int = Field(
        default=200, ge=1, description="uploads deleted per retention pass at most"
    )
    auth_failure_limit: int = Field(
        default=20, ge=0, description="failed token checks per client/token prefix; 0 = off"
    )
    auth_failure_window: float = Field(
        default=60.0, gt=0.0, description="seconds over which auth_failure_limit counts"
    )
    session_hours: float = Field(
        default=12.0,
        gt=0.0,
        le=24.0 * 30,
        description="hours a browser stays signed in after the login form (then: sign in again)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        problems = [*public_url_problems(self.public_url, production=self.mode == "production")]
        if self.mode == "production":
            tok = self.organizer_token.get_secret_value() if self.organizer_token else None
            if tok is not None and (why := weak_secret(tok)) is not None:
                problems.append(
                    f"HECKTOR_ORGANIZER_TOKEN {why}; a token needs at least {MIN_SECRET_CHARS} "
                    f"characters and an estimated {MIN_SECRET_BITS} bits of entropy (length x "
                    "Shannon entropy of its characters); make one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
            broker = urlsplit(self.broker_url)
            if (
                self.dispatcher == "celery"
                and broker.scheme in ("redis", "rediss")
                and not broker.password
            ):
                problems.append(
                    "HECKTOR_BROKER_URL has no password: production's Redis must require one "
                    "(redis-server --requirepass <secret>) and the URL carry it, "
                    "redis://:<secret>@host:6379/0"
                )
            for name, meaning in NO_LIMIT_WHEN_ZERO.items():
                if getattr(self, name) == 0:
                    problems.append(
                        f"HECKTOR_{name.upper()} is 0, which means no limit ({meaning}); "
                        "production needs a limit (the default is "
                        f"{type(self).model_fields[name].default})"
                    )
        if problems:
            raise ValueError(
                f"unsafe {self.mode} settings: " + "; ".join(problems)
                if self.mode == "production"
                else "; ".join(problems)
            )
        return self

    @model_validator(mode="after")
    def _check_broker(self) -> Settings:
        v, t = self.broker_visibility_timeout, self.job_timeout_seconds
        if v and (t == 0 or v <= t):
            raise ValueError(
                f"HECKTOR_BROKER_VISIBILITY_TIMEOUT ({v} s) must be longer than the job time "
                f"limit HECKTOR_JOB_TIMEOUT_SECONDS ({t or 'none'}), or a job still running "
                "would be handed to a second worker; leave it 0 for the job limit + 10 min"
            )
        return self

    # -- derived ------------------------------------------------------------------
    @property
    def visibility_timeout(self) -> int:
        """Seconds the broker waits before re-delivering an unacknowledged job."""
        if self.broker_visibility_timeout:
            return self.broker_visibility_timeout
        return self.job_timeout_seconds + 600 if self.job_timeout_seconds else 7 * 24 * 3600

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'hecktor.db'}"

    @property
    def db_url_display(self) -> str:
        """:attr:`db_url` with its password hidden (``***``), for printing and logs."""
        try:
            return make_url(self.db_url).render_as_string(hide_password=True)
        except Exception:  # not parseable: show nothing of it rather than a secret
            return "<unparseable database URL>"

    @property
    def n_workers(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    @property
    def submissions_dir(self) -> Path:
        return self.data_dir / "submissions"

    @property
    def ground_truth_dir(self) -> Path:
        return self.data_dir / "ground_truth"

    @property
    def incoming_dir(self) -> Path:
        return self.data_dir / "incoming"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.submissions_dir, self.ground_truth_dir, self.incoming_dir):
            d.mkdir(parents=True, exist_ok=True)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, picklable, to rebuild the settings in a worker process."""
        d = self.model_dump(mode="json")
        d["organizer_token"] = (
            self.organizer_token.get_secret_value() if self.organizer_token else None
        )
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Settings:
        # Explicit values win over the environment; `_env_file=None` keeps it reproducible.
        return cls(_env_file=None, **data)  # type: ignore[call-arg]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

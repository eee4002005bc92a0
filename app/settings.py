"""One settings object for the service, read from ``HECKTOR_*`` environment variables.

Every setting has a safe default for the embedded mode (SQLite in the data folder,
local process pool). A ``.env`` file in the working folder is read too.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1 << 30


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
    auth_failure_limit: int = Field(
        default=20, ge=0, description="failed token checks per client/token prefix; 0 = off"
    )
    auth_failure_window: float = Field(
        default=60.0, gt=0.0, description="seconds over which auth_failure_limit counts"
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    public_url: str = "http://127.0.0.1:8000"

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.mode == "production":
            tok = self.organizer_token.get_secret_value() if self.organizer_token else None
            if tok is not None and len(tok) < 32:
                raise ValueError(
                    "HECKTOR_ORGANIZER_TOKEN is shorter than 32 characters; "
                    "use `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
                )
            if self.public_url.startswith("http://") and "127.0.0.1" not in self.public_url:
                raise ValueError("in production HECKTOR_PUBLIC_URL must be https://")
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

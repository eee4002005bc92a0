"""API schemas, named by role, separate from the ORM models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorItem(BaseModel):
    case: str = ""
    kind: str = ""
    message: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []


class Progress(BaseModel):
    done: int
    total: int


class SubmissionAccepted(BaseModel):
    id: int
    status: Literal["queued"]
    dry_run: bool
    phase: str
    task: int
    sha256: str
    size_bytes: int
    url: str


class SubmissionPublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    team: str
    phase: str
    task: int
    dry_run: bool
    status: Literal["received", "queued", "running", "scored", "valid", "failed"]
    progress: Progress
    filename: str
    size_bytes: int
    sha256: str
    submitted_at: datetime
    started_at: datetime | None
    scored_at: datetime | None
    finished_at: datetime | None
    scores_hidden: bool = Field(
        description="true in a hidden phase: the team sees status and errors, never scores"
    )
    result: dict[str, Any] | None = Field(
        description="the SPEC section 5 result document (with its cases), when scored"
    )
    errors: list[ErrorItem] | None = Field(description="every problem found, when failed")


class SubmissionSummary(BaseModel):
    id: int
    team: str
    phase: str
    task: int
    dry_run: bool
    status: str
    progress: Progress
    submitted_at: datetime
    finished_at: datetime | None


class LeaderboardEntry(BaseModel):
    rank: float
    team: str
    submission_id: int
    metrics: dict[str, float | int | None]
    ranks: dict[str, float]
    submitted_at: str | None
    scored_at: str | None


class Leaderboard(BaseModel):
    phase: str
    task: int
    selection: Literal["best", "latest"]
    protocol_sha256: str
    ground_truth_sha256: str
    rows: list[LeaderboardEntry]


class PhasePublic(BaseModel):
    name: str
    title: str
    is_open: bool
    hidden: bool
    leaderboard_public: bool
    daily_limit: int
    selection: str
    tasks: list[int]
    created_at: datetime


class TaskDetail(BaseModel):
    task: int
    n_cases: int
    ground_truth_sha256: str
    protocol_sha256: str
    protocol: dict[str, Any]
    imported_at: datetime


class PhaseDetail(PhasePublic):
    task_details: list[TaskDetail]


class PhaseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    ground_truth: str = Field(
        description="server-side folder holding 'Task 1', 'Task 2', 'Task 3' (SPEC section 1)"
    )
    tasks: list[int] = [1, 2, 3]
    title: str = ""
    hidden: bool = False
    leaderboard_public: bool | None = Field(
        default=None, description="default: public unless the phase is hidden"
    )
    daily_limit: int | None = Field(default=None, ge=0)
    selection: Literal["best", "latest"] = "best"
    is_open: bool = True
    protocol: dict[str, Any] | None = None


class PhaseUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str | None = None
    is_open: bool | None = None
    hidden: bool | None = None
    leaderboard_public: bool | None = None
    daily_limit: int | None = Field(default=None, ge=0)
    selection: Literal["best", "latest"] | None = None


class GroundTruthImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ground_truth: str
    tasks: list[int] = [1, 2, 3]
    protocol: dict[str, Any] | None = None
    rescore: bool = True


class RescoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    task: int | None = Field(default=None, ge=1, le=3)


class RescoreResult(BaseModel):
    phase: str
    queued: list[int]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64)


class TeamCreated(BaseModel):
    id: int
    name: str
    token: str = Field(description="shown once; only its SHA-256 is stored")


class TeamPublic(BaseModel):
    id: int
    name: str
    created_at: datetime
    submissions: int


class Me(BaseModel):
    role: Literal["organizer", "team"]
    team: str | None

"""API schemas of the ranking analysis, the per-centre results and the frozen
leaderboards, named by role like :mod:`app.api.schemas`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.api.schemas import REQUEST


class CenterMetrics(BaseModel):
    center: str
    n_cases: int
    metrics: dict[str, float | int | None]
    undefined: dict[str, str] = Field(
        default_factory=dict, description="metric -> why it is undefined on this centre"
    )


class CenterCount(BaseModel):
    center: str
    n_cases: int


class AnalysisTeam(BaseModel):
    team: str
    submission_id: int
    rank: float | None = None


class LeaderboardAnalysis(BaseModel):
    phase: str
    task: int
    selection: Literal["best", "latest"]
    frozen: bool
    frozen_at: datetime | None = None
    protocol_sha256: str
    ground_truth_sha256: str
    cache: dict[str, Any] = Field(description="key, hit, source (computed | cache | snapshot)")
    n_resamples: int
    seed: int
    alpha: float
    computed_at: str | None = None
    evaluator_version: str | None = None
    teams: list[AnalysisTeam]
    bootstrap: dict[str, Any] | None = Field(
        description="per team and metric: estimate, percentile interval (low, high), mean, "
        "std; per team: final-rank distribution (median, interval, counts per rank value, "
        "first-place share); Kendall's tau; beats[a][b]"
    )
    bootstrap_error: str | None = None
    kendall_tau: dict[str, Any] | None = None
    centers: list[CenterCount]
    per_center: dict[str, dict[str, CenterMetrics]] = Field(description="team -> centre -> metrics")
    per_case: dict[str, list[dict[str, Any]]] = Field(
        description="Task 1: team -> per-case GTVp DSC by patient (None when both sides are "
        "empty); for teams their own team's rows only, for anonymous readers none"
    )
    per_case_values: dict[str, list[float | None]] | None = Field(
        default=None,
        description="teams and anonymous readers, Task 1, phases showing per-case scores: "
        "team -> its per-case GTVp DSC sorted by value (no patient, no centre)",
    )
    withheld_centers: int = Field(
        default=0, description="centres under the phase's min_center_cases, not shown"
    )
    note: str | None = None


class LeaderboardCenterRow(BaseModel):
    rank: float
    team: str
    submission_id: int
    centers: dict[str, CenterMetrics]


class LeaderboardCenters(BaseModel):
    phase: str
    task: int
    protocol: str = Field(default="hecktor2025", description="the name of the rules")
    selection: Literal["best", "latest"]
    frozen: bool
    frozen_at: datetime | None = None
    centers: list[CenterCount]
    rows: list[LeaderboardCenterRow]
    withheld_centers: int = Field(
        default=0, description="centres under the phase's min_center_cases, not shown"
    )
    note: str | None = None


class SubmissionCenters(BaseModel):
    submission_id: int
    task: int
    centers: list[CenterMetrics]
    withheld_centers: int = Field(
        default=0, description="centres under the phase's min_center_cases, not shown"
    )
    note: str | None = None


class FreezeRequest(BaseModel):
    model_config = REQUEST

    refreeze: bool = Field(default=False, description="replace the current snapshot")
    force: bool = Field(default=False, description="freeze even while submissions are judged")
    note: str = Field(default="", max_length=2000)
    n_resamples: int | None = Field(default=None, ge=0, le=20_000)
    seed: int | None = Field(default=None, ge=0)


class SnapshotSummary(BaseModel):
    id: int
    task: int
    selection: str
    active: bool
    frozen_at: datetime
    unfrozen_at: datetime | None
    note: str
    n_rows: int
    n_resamples: int | None
    seed: int | None
    content_sha256: str
    evaluator_version: str


class FreezeResult(BaseModel):
    phase: str
    frozen: bool
    snapshots: list[SnapshotSummary]

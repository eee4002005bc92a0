"""API schemas, named by role, separate from the ORM models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# request bodies: unknown fields refused, and no coercion (``true`` is not the integer 1,
# ``"5"`` is not 5): what an organizer sends is what is stored
REQUEST = ConfigDict(extra="forbid", strict=True)


class ErrorItem(BaseModel):
    case: str = ""
    kind: str = ""
    message: str


class WarningItem(BaseModel):
    kind: str = ""
    metric: str = ""
    message: str


class ErrorResponse(BaseModel):
    detail: str
    errors: list[ErrorItem] = []


class Progress(BaseModel):
    done: int
    total: int
    note: str = Field(
        default="", description="what the judge is doing, e.g. 'running case 3, 4 of 50 (2 done)'"
    )


class SubmissionAccepted(BaseModel):
    id: int
    status: Literal["queued"]
    dry_run: bool
    phase: str
    task: int
    sha256: str
    size_bytes: int
    url: str
    note: str | None = Field(
        default=None,
        description="set while the phase's leaderboards are frozen: when the result shows",
    )
    kind: Literal["predictions", "algorithm"] = Field(
        default="predictions",
        description="predictions (an archive or table) or algorithm (a container image)",
    )
    image_id: str | None = Field(
        default=None, description="an algorithm's image id (its config's SHA-256)"
    )
    model_sha256: str | None = Field(
        default=None, description="SHA-256 of the model tarball sent with the image"
    )


class AllowanceLeft(BaseModel):
    used: int
    limit: int
    bytes: int
    byte_limit: int


class QuotaLeft(BaseModel):
    limit: int = Field(description="real submissions per 24 hours (daily_limit)")
    used: int = Field(description="counted in the last 24 hours (failed ones do not count)")
    left: int


class CaseLimitsPublic(BaseModel):
    """The limits each case of an algorithm phase runs under."""

    cases: int = Field(description="hidden cases the algorithm is run on, one container each")
    seconds: int = Field(description="wall-clock time per case")
    memory_mb: int = Field(description="memory per case (no swap)")
    cpus: float
    pids: int = Field(description="processes and threads per case")
    gpu: bool
    tmp_mb: int = Field(description="size of the writable /tmp")
    output_mb: int = Field(description="size of /output")
    network: bool = Field(description="whether the container has a network (never)")


class SubmissionLimits(BaseModel):
    """What an upload to a phase and task may be, for a client to check before sending."""

    phase: str
    task: int
    dry_run: bool
    kind: Literal["predictions", "algorithm", "both"] = Field(
        default="predictions",
        description="what the phase judges: prediction archives, algorithm images, or both",
    )
    max_upload_bytes: int = Field(description="uploads larger than this are refused (413)")
    max_archive_bytes: int | None = Field(
        default=None, description="the cap of a prediction archive or table (413)"
    )
    max_image_bytes: int | None = Field(
        default=None,
        description="the cap of a container image tarball, compressed and uncompressed",
    )
    max_model_bytes: int | None = Field(
        default=None, description="the cap of the optional model tarball (field 'model')"
    )
    accepted_types: list[str] = Field(description="by content, not by name; others are 415")
    model_types: list[str] = Field(
        default_factory=list, description="what the field 'model' may be (algorithm phases)"
    )
    case_limits: CaseLimitsPublic | None = Field(
        default=None, description="what each hidden case's container runs under"
    )
    quota: QuotaLeft
    dry_runs: AllowanceLeft
    failed: AllowanceLeft


class SubmissionPublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    team: str
    phase: str
    task: int
    dry_run: bool
    kind: Literal["predictions", "algorithm"] = "predictions"
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
    case_rows: Literal["all", "scores", "none"] = Field(
        default="scores",
        description="the per-case rows in result.cases: 'all' (organizers: full records), "
        "'scores' (the team's predictions and per-case scores, no ground-truth value), "
        "'none' (the phase shows teams aggregate scores only: no cases)",
    )
    result: dict[str, Any] | None = Field(
        description="the docs/scoring.md section 5 result document, when scored; its cases as "
        "case_rows says (teams: no ground-truth field; none in an aggregate-only phase)"
    )
    errors: list[ErrorItem] | None = Field(description="every problem found, when failed")
    warnings: list[WarningItem] = Field(
        default=[],
        description="the result document's warnings, shown with the result (empty when none, "
        "or while the result is hidden): e.g. a C-index or AUC far below 0.5, predictions "
        "that look inverted; the score is unchanged",
    )


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
    # frozen leaderboards: what each row's result was computed from
    submission_sha256: str | None = None
    ground_truth_sha256: str | None = None
    protocol_sha256: str | None = None
    protocol: dict[str, Any] | None = None
    evaluator_version: str | None = None
    result_sha256: str | None = None


class Leaderboard(BaseModel):
    phase: str
    task: int
    selection: Literal["best", "latest"]
    protocol: str = Field(
        default="hecktor2025", description="the name of the rules the board is ranked by"
    )
    protocol_sha256: str
    ground_truth_sha256: str
    rows: list[LeaderboardEntry]
    frozen: bool = Field(
        default=False, description="true: the snapshot stored when an organizer froze the phase"
    )
    frozen_at: datetime | None = None
    snapshot_id: int | None = None
    snapshot_sha256: str | None = None


class OverallEntry(BaseModel):
    rank: float
    team: str
    combined: float | None = Field(
        description="the weighted mean of the team's task ranks; null when it misses a "
        "weighted task (ranked last)"
    )
    task_ranks: dict[str, float]


class OverallLeaderboard(BaseModel):
    phase: str
    protocols: list[str]
    weights: dict[str, float] = Field(description="task -> weight of its rank")
    rows: list[OverallEntry]


class PhasePublic(BaseModel):
    name: str
    title: str
    is_open: bool
    hidden: bool
    leaderboard_public: bool
    daily_limit: int
    selection: str
    case_rows: Literal["scores", "none"] = Field(
        default="scores",
        description="per-case rows a team sees of its own submissions: 'scores' (its "
        "predictions and per-case scores, never a ground-truth value) or 'none'",
    )
    min_center_cases: int = Field(
        default=5, description="per-centre results of smaller centres: organizers only"
    )
    tasks: list[int]
    created_at: datetime
    frozen: bool = Field(
        default=False,
        description="the leaderboards serve a snapshot: new results appear when unfrozen",
    )
    frozen_at: datetime | None = None
    frozen_note: str | None = Field(
        default=None, description="what a frozen phase means for a new submission"
    )
    kind: Literal["predictions", "algorithm", "both"] = Field(
        default="predictions",
        description="what teams upload: prediction archives and tables ('predictions'), an "
        "inference container image run on each hidden case ('algorithm'), or either ('both')",
    )
    case_seconds: int = Field(default=600, description="an algorithm's time per case, seconds")
    case_memory_mb: int = Field(default=4096, description="memory per case in MiB, swap included")
    case_cpus: float = Field(default=1.0, description="CPUs per case")
    case_gpu: bool = Field(default=False, description="whether each case gets a GPU")
    image_max_bytes: int = Field(
        default=10 << 30, description="largest container image, bytes uncompressed"
    )


class TaskDetail(BaseModel):
    task: int
    n_cases: int
    ground_truth_sha256: str
    protocol_sha256: str
    protocol: dict[str, Any]
    imported_at: datetime


class PhaseDetail(PhasePublic):
    task_details: list[TaskDetail]
    analysis_resamples: int = 1000
    analysis_seed: int = 0
    dry_run_limit: int = Field(default=20, description="dry runs per team, task and 24 h")
    dry_run_bytes: int = Field(default=8 << 30, description="dry-run bytes per team, task, 24 h")
    failed_limit: int = Field(default=10, description="failed submissions per team, task, 24 h")
    failed_bytes: int = Field(default=8 << 30, description="failed bytes per team, task, 24 h")
    retention_days: int = Field(default=7, description="days failed uploads and dry runs are kept")
    case_pids: int = Field(default=128, description="processes and threads per case")
    case_tmp_mb: int = Field(default=512, description="size of /tmp per case, MiB")
    case_output_mb: int = Field(default=1024, description="size of /output per case, MiB")
    parallel_cases: int = Field(default=2, description="cases of one submission run at once")
    fail_fast: bool = Field(default=True, description="the first failed case fails the submission")
    n_inputs: int = Field(default=0, description="cases with algorithm inputs")
    inputs_sha256: str | None = Field(
        default=None, description="hash of the converted algorithm inputs"
    )


CASE_ROWS_FIELD = Field(
    default=None,
    description="per-case rows teams see: 'scores' (default; their predictions and per-case "
    "scores, never a ground-truth value) or 'none' (aggregate scores only; recommended "
    "for test phases)",
)


def _count(description: str, top: int = 1_000_000) -> Any:
    return Field(default=None, ge=0, le=top, strict=True, description=description)


class PhaseSettings(BaseModel):
    """Visibility, allowance and retention settings (``None``: unchanged / default)."""

    case_rows: Literal["scores", "none"] | None = CASE_ROWS_FIELD
    min_center_cases: int | None = _count(
        "per-centre results of centres with fewer cases are shown to organizers only (default 5)"
    )
    dry_run_limit: int | None = _count("dry runs per team, task and 24 h (default 20)")
    dry_run_bytes: int | None = _count(
        "bytes of dry-run uploads per team, task and 24 h (default 8 GiB)", 2**63 - 1
    )
    failed_limit: int | None = _count("failed submissions per team, task and 24 h (default 10)")
    failed_bytes: int | None = _count(
        "bytes of failed uploads per team, task and 24 h (default 8 GiB)", 2**63 - 1
    )
    retention_days: int | None = _count(
        "days failed uploads and dry runs are kept (default 7)", 36_500
    )


def _limit(description: str) -> Any:
    # bounds are checked by the service, whose message says what is accepted (400)
    return Field(default=None, description=description)


class AlgorithmSettings(BaseModel):
    """How an algorithm phase runs each case (``None``: unchanged / default)."""

    case_seconds: int | None = _limit("wall-clock seconds per case, 1-86400 (default 600)")
    case_memory_mb: int | None = _limit("memory per case in MiB, 64-1048576 (default 4096)")
    case_cpus: float | None = _limit("CPUs per case, 0.1-256 (default 1)")
    case_pids: int | None = _limit("processes and threads per case, 16-1000000 (default 128)")
    case_gpu: bool | None = _limit("a GPU per case (default false)")
    case_tmp_mb: int | None = _limit("size of /tmp per case in MiB, 1-1048576 (default 512)")
    case_output_mb: int | None = _limit("size of /output per case in MiB, 1-1048576 (default 1024)")
    image_max_bytes: int | None = _limit(
        "largest container image in bytes, uncompressed, 1 MiB-100 GiB (default 10 GiB)"
    )
    parallel_cases: int | None = _limit("cases of a submission run at once, 1-64 (default 2)")
    fail_fast: bool | None = _limit("the first failed case fails the submission (default true)")


class PhaseCreate(PhaseSettings, AlgorithmSettings):
    model_config = REQUEST

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    ground_truth: str = Field(
        description="server-side folder holding 'Task 1', 'Task 2', 'Task 3' (docs/scoring.md section 1)"
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
    protocol: dict[str, Any] | str | None = Field(
        default=None,
        description="a built-in protocol by name (hecktor2025, hecktor2026) or a protocol "
        "object (its 'name' picks the edition); default hecktor2025",
    )
    analysis_resamples: int | None = Field(
        default=None, ge=0, le=20_000, description="bootstrap resamples (default 1000)"
    )
    analysis_seed: int | None = Field(default=None, ge=0, description="bootstrap seed")
    kind: str | None = Field(
        default=None,
        description="'predictions' (default), 'algorithm' or 'both'; algorithm and both "
        "need inputs",
    )
    inputs: str | None = Field(
        default=None,
        description="server-side folder with each case's inputs: <PatientID>/"
        "<PatientID>__CT.nii.gz, <PatientID>__PT.nii.gz, ehr.json",
    )


class PhaseUpdate(PhaseSettings, AlgorithmSettings):
    model_config = REQUEST

    title: str | None = None
    is_open: bool | None = None
    hidden: bool | None = None
    leaderboard_public: bool | None = None
    daily_limit: int | None = Field(default=None, ge=0)
    selection: Literal["best", "latest"] | None = None
    analysis_resamples: int | None = Field(default=None, ge=0, le=20_000)
    analysis_seed: int | None = Field(default=None, ge=0)
    kind: str | None = Field(
        default=None, description="'predictions', 'algorithm' or 'both' (needs inputs)"
    )


class InputsImport(BaseModel):
    model_config = REQUEST

    inputs: str = Field(
        description="server-side folder with each case's inputs: <PatientID>/"
        "<PatientID>__CT.nii.gz, <PatientID>__PT.nii.gz, ehr.json"
    )


class GroundTruthImport(BaseModel):
    model_config = REQUEST

    ground_truth: str
    tasks: list[int] = [1, 2, 3]
    protocol: dict[str, Any] | str | None = Field(
        default=None,
        description="a built-in protocol by name (hecktor2025, hecktor2026) or a protocol "
        "object (its 'name' picks the edition); default hecktor2025",
    )
    rescore: bool = True


class RescoreRequest(BaseModel):
    model_config = REQUEST

    task: int | None = Field(default=None, ge=1, le=3)


class RescoreResult(BaseModel):
    phase: str
    queued: list[int]


class TeamCreate(BaseModel):
    model_config = REQUEST

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

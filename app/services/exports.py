"""CSV exports: a leaderboard's rows, and per-centre results (one line per row and
centre). Text only; the callers fetch the rows and check who may see them."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from typing import Any

from app.formatting import csv_number, format_rank
from evaluator.registry import ProtocolRef, metrics_of

__all__ = ["leaderboard_csv", "per_center_csv"]


def leaderboard_csv(
    task: int, rows: Sequence[Mapping[str, Any]], protocol: ProtocolRef | None = None
) -> str:
    """One line per leaderboard row: rank, team, submission, every metric of the task
    (under ``protocol``'s edition, by default the 2025 one), each rank the rows carry
    (``rank_<name>``) and the submission and scoring times."""
    metric_names = [m.name for m in metrics_of(task, protocol)]
    rank_names: list[str] = []
    for row in rows:
        for k in row["ranks"]:
            if k not in rank_names:
                rank_names.append(k)
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(
        [
            "rank",
            "team",
            "submission_id",
            *metric_names,
            *[f"rank_{k}" for k in rank_names],
            "submitted_at",
            "scored_at",
        ]
    )
    for row in rows:
        w.writerow(
            [
                format_rank(row["rank"]),
                row["team"],
                row["submission_id"],
                *[csv_number(row["metrics"].get(k)) for k in metric_names],
                *[format_rank(row["ranks"].get(k)) for k in rank_names],
                row["submitted_at"] or "",
                row["scored_at"] or "",
            ]
        )
    return out.getvalue()


def per_center_csv(
    task: int,
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str] | None = None,
    protocol: ProtocolRef | None = None,
) -> str:
    """Long format: one line per (leaderboard row, centre). ``rows`` as in
    :func:`app.services.board_centers.leaderboard_centers` (``rank``/``team``/
    ``submission_id`` optional, for a single submission); ``names``: the metric columns
    (default: every metric of the task under ``protocol``'s edition). A last column,
    ``undefined``, gives the reasons of the undefined cells when there are any."""
    names = list(names) if names is not None else [m.name for m in metrics_of(task, protocol)]
    # the column of reasons is there only when some metric is undefined somewhere
    why = any(res.get("undefined") for row in rows for res in row["centers"].values())
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    head = ["rank", "team", "submission_id", "center", "n_cases", *names]
    w.writerow([*head, "undefined"] if why else head)
    for row in rows:
        for centre, res in row["centers"].items():
            metrics = res.get("metrics", {})
            line = [
                format_rank(row.get("rank")),
                row.get("team", ""),
                row.get("submission_id", ""),
                centre,
                res.get("n_cases", ""),
                *[csv_number(metrics.get(k)) for k in names],
            ]
            w.writerow([*line, _reasons(res.get("undefined") or {})] if why else line)
    return out.getvalue()


def _reasons(undefined: Mapping[str, str]) -> str:
    """``metric, metric: reason; ...`` (metrics sharing a reason listed together)."""
    by_reason: dict[str, list[str]] = {}
    for metric, reason in undefined.items():
        by_reason.setdefault(reason, []).append(metric)
    return "; ".join(f"{', '.join(ms)}: {r}" for r, ms in by_reason.items())

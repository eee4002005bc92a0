"""Terminal output shared by the CLI and the demo (rich tables)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from app.formatting import format_number, format_rank, metric_label
from evaluator.registry import metrics_of, ranked_metrics

SHORT = {
    "gtvp_dsc_mean": "GTVp DSC",
    "gtvn_dsc_agg": "GTVn DSCagg",
    "gtvn_f1_agg": "GTVn F1agg",
    "gtvn_tp": "TP",
    "gtvn_fp": "FP",
    "gtvn_fn": "FN",
    "c_index": "C-index",
    "auc": "AUC",
    "balanced_accuracy": "Bal. acc.",
    "sensitivity": "Sens.",
    "specificity": "Spec.",
    "f1_macro": "F1 macro",
    "f1_weighted": "F1 weighted",
}

TASK_TITLES = {
    1: "Task 1 · GTVp/GTVn segmentation",
    2: "Task 2 · recurrence-free survival (C-index)",
    3: "Task 3 · HPV status (AUC)",
}


def _frozen_at(board: Mapping[str, Any]) -> str:
    t = board.get("frozen_at")
    return t.strftime("%Y-%m-%d %H:%M UTC") if isinstance(t, datetime) else str(t or "")


def leaderboard_table(board: Mapping[str, Any]) -> Table:
    task = int(board["task"])
    ranked = [m.name for m in ranked_metrics(task)]
    others = [m.name for m in metrics_of(task) if m.name not in ranked]
    table = Table(
        title=f"{board['phase']} · {TASK_TITLES.get(task, f'Task {task}')}",
        title_justify="left",
        caption=f"{board.get('selection', 'best')} submission per team; ties share the average rank"
        + (f"; frozen {_frozen_at(board)}" if board.get("frozen") else ""),
    )
    table.add_column("Rank", justify="right", style="bold")
    table.add_column("Team", no_wrap=True)
    for name in ranked:
        table.add_column(SHORT.get(name, name), justify="right", style="cyan")
    for name in others:
        table.add_column(SHORT.get(name, name), justify="right")
    if task == 1:
        table.add_column("r GTVp", justify="right")
        table.add_column("r GTVn", justify="right")
    table.add_column("#", justify="right")
    for row in board["rows"]:
        cells = [format_rank(row["rank"]), row["team"]]
        cells += [format_number(row["metrics"].get(n)) for n in ranked + others]
        if task == 1:
            cells += [
                format_rank(row["ranks"].get("gtvp_dsc_mean")),
                format_rank(row["ranks"].get("gtvn")),
            ]
        cells.append(str(row["submission_id"]))
        table.add_row(*cells)
    return table


def metrics_table(metrics: Mapping[str, Any], title: str = "Metrics") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("Metric")
    table.add_column("Value", justify="right")
    for k, v in metrics.items():
        table.add_row(metric_label(k), format_number(v))
    return table


def errors_table(errors: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Problems found (nothing was scored)", title_justify="left")
    table.add_column("Case / file")
    table.add_column("Kind")
    table.add_column("Message", overflow="fold")
    for e in errors:
        table.add_row(str(e.get("case", "")), str(e.get("kind", "")), str(e.get("message", "")))
    return table


def console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, highlight=False)

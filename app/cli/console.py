"""Terminal output shared by the CLI and the demo (rich tables)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from app.formatting import format_number, format_rank, metric_label, task_title
from evaluator.editions.base import RankBy, RankOfSum
from evaluator.ranking import ranking_rule
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
    "seg_dsc": "DSC",
    "seg_gtvp_dsc": "GTVp DSC",
    "seg_gtvn_dsc": "GTVn DSC",
    "rfs_cindex": "C-index",
    "staging_bacc": "Staging BA",
    "t_bacc": "T BA",
    "n_bacc": "N BA",
}
#: the partial ranks of a task whose rule sums ranks (the 2025 Task 1: r_p and r_n)
RANK_SHORT = {"gtvp_dsc_mean": "r GTVp", "gtvn": "r GTVn"}


def _rank_groups(task: int, protocol: str | None) -> list[tuple[str, str]]:
    """(rank key, column label) of the parts of a rule that sums ranks; none for a task
    ranked by one metric (its rank is the final rank)."""
    rule = ranking_rule(task, protocol)
    if not isinstance(rule, RankOfSum):
        return []
    keys = [p.metric if isinstance(p, RankBy) else p.name for p in rule.parts]
    return [(k, RANK_SHORT.get(k, f"r {k}")) for k in keys]


def _title(task: int, protocol: str | None) -> str:
    """The task's title and, when one metric ranks it, that metric's label."""
    ranked = ranked_metrics(task, protocol)
    suffix = f" ({ranked[0].label})" if len(ranked) == 1 else ""
    return task_title(task, protocol) + suffix


def _frozen_at(board: Mapping[str, Any]) -> str:
    t = board.get("frozen_at")
    return t.strftime("%Y-%m-%d %H:%M UTC") if isinstance(t, datetime) else str(t or "")


def leaderboard_table(board: Mapping[str, Any]) -> Table:
    task = int(board["task"])
    protocol = board.get("protocol")
    ranked = [m.name for m in ranked_metrics(task, protocol)]
    others = [m.name for m in metrics_of(task, protocol) if m.name not in ranked]
    groups = _rank_groups(task, protocol)
    title = f"{board['phase']} · {_title(task, protocol)}"
    table = Table(
        title=title,
        title_justify="left",
        # a narrow board (one metric) is as wide as its title, which then keeps to a line
        min_width=len(title),
        caption=f"{board.get('selection', 'best')} submission per team; ties share the average rank"
        + "; #: the id of the submission ranked"
        + (f"; frozen {_frozen_at(board)}" if board.get("frozen") else ""),
    )
    table.add_column("Rank", justify="right", style="bold")
    table.add_column("Team", no_wrap=True)
    for name in ranked:
        table.add_column(SHORT.get(name, name), justify="right", style="cyan")
    for name in others:
        table.add_column(SHORT.get(name, name), justify="right")
    for _key, label in groups:
        table.add_column(label, justify="right")
    table.add_column("#", justify="right")
    for row in board["rows"]:
        cells = [format_rank(row["rank"]), row["team"]]
        cells += [format_number(row["metrics"].get(n)) for n in ranked + others]
        cells += [format_rank(row["ranks"].get(key)) for key, _label in groups]
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

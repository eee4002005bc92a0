"""The records of a bootstrap of a leaderboard (:func:`evaluator.bootstrap.bootstrap`):
per team the metrics' intervals and the final rank's distribution, and over all teams
Kendall's tau; each with its JSON form (``to_dict``) and back (``from_dict``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from evaluator.protocol import ProtocolSummary

__all__ = [
    "BootstrapResult",
    "KendallSummary",
    "MetricInterval",
    "RankStability",
    "TeamBootstrap",
]


@dataclass(frozen=True, kw_only=True)
class MetricInterval:
    """One team's metric: the full-data value and its bootstrap distribution."""

    estimate: float | None  # full data, as on the leaderboard (None: undefined)
    low: float | None  # percentile interval, (alpha/2, 1 - alpha/2)
    high: float | None
    mean: float | None  # mean over the defined resamples
    std: float | None  # bootstrap standard error
    n_degenerate: int  # resamples where this metric is undefined

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "mean": self.mean,
            "std": self.std,
            "n_degenerate": self.n_degenerate,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricInterval:
        """The inverse of :meth:`to_dict`."""
        return cls(
            estimate=d["estimate"],
            low=d["low"],
            high=d["high"],
            mean=d["mean"],
            std=d["std"],
            n_degenerate=d["n_degenerate"],
        )


@dataclass(frozen=True, kw_only=True)
class RankStability:
    """One team's final HECKTOR rank across the (non-degenerate) resamples."""

    full_rank: float  # rank on the full data (as on the leaderboard)
    median: float | None
    low: float | None
    high: float | None
    counts: tuple[int, ...]  # aligned with BootstrapResult.rank_values
    first_place_share: float | None  # share of resamples where it is (tied) first

    def to_dict(self) -> dict[str, Any]:
        return {
            "full_rank": self.full_rank,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "counts": list(self.counts),
            "first_place_share": self.first_place_share,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RankStability:
        """The inverse of :meth:`to_dict`."""
        return cls(
            full_rank=float(d["full_rank"]),
            median=d["median"],
            low=d["low"],
            high=d["high"],
            counts=tuple(int(c) for c in d["counts"]),
            first_place_share=d["first_place_share"],
        )


@dataclass(frozen=True, kw_only=True)
class TeamBootstrap:
    team: str
    metrics: dict[str, MetricInterval]
    rank: RankStability

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "rank": self.rank.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TeamBootstrap:
        """The inverse of :meth:`to_dict`."""
        return cls(
            team=d["team"],
            metrics={k: MetricInterval.from_dict(v) for k, v in d["metrics"].items()},
            rank=RankStability.from_dict(d["rank"]),
        )


@dataclass(frozen=True, kw_only=True)
class KendallSummary:
    """Kendall's tau-b between the full-data final ranking and each resample's."""

    mean: float | None
    median: float | None
    low: float | None
    high: float | None
    n: int  # resamples where it is defined

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "median": self.median,
            "low": self.low,
            "high": self.high,
            "n": self.n,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> KendallSummary:
        """The inverse of :meth:`to_dict`."""
        return cls(mean=d["mean"], median=d["median"], low=d["low"], high=d["high"], n=d["n"])


@dataclass(frozen=True, kw_only=True)
class BootstrapResult:
    task: int
    n_cases: int
    n_resamples: int
    seed: int
    alpha: float
    protocol: ProtocolSummary
    metric_names: tuple[str, ...]
    teams: tuple[TeamBootstrap, ...]  # in the order given
    rank_values: tuple[float, ...]  # the distinct final ranks seen, ascending
    n_degenerate: int  # resamples left out of the rank statistics
    kendall_tau: KendallSummary
    # beats[a][b]: share of rank resamples where team a ranks strictly better than b
    # (None without any rank resample)
    beats: tuple[tuple[float | None, ...], ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def team_names(self) -> tuple[str, ...]:
        return tuple(t.team for t in self.teams)

    def team(self, name: str) -> TeamBootstrap:
        for t in self.teams:
            if t.team == name:
                return t
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "n_cases": self.n_cases,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
            "alpha": self.alpha,
            "protocol": dict(self.protocol),
            "metric_names": list(self.metric_names),
            "teams": [t.to_dict() for t in self.teams],
            "rank_values": list(self.rank_values),
            "n_degenerate": self.n_degenerate,
            "kendall_tau": self.kendall_tau.to_dict(),
            "beats": [list(row) for row in self.beats],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BootstrapResult:
        """The inverse of :meth:`to_dict` (for plots of stored analyses)."""
        return cls(
            task=int(d["task"]),
            n_cases=int(d["n_cases"]),
            n_resamples=int(d["n_resamples"]),
            seed=int(d["seed"]),
            alpha=float(d["alpha"]),
            protocol=cast(ProtocolSummary, dict(d["protocol"])),
            metric_names=tuple(d["metric_names"]),
            teams=tuple(TeamBootstrap.from_dict(t) for t in d["teams"]),
            rank_values=tuple(float(v) for v in d["rank_values"]),
            n_degenerate=int(d["n_degenerate"]),
            kendall_tau=KendallSummary.from_dict(d["kendall_tau"]),
            beats=tuple(tuple(row) for row in d["beats"]),
            notes=tuple(d.get("notes", ())),
        )

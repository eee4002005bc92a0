"""app.services.board_rows: one entry per team (best or latest), HECKTOR ranks and ties,
and the board as CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.formatting import format_rank
from app.services.board_rows import Entry, build_leaderboard
from app.services.exports import leaderboard_csv

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def _e(team: str, sid: int, c: float, minutes: int) -> Entry:
    return Entry(
        team,
        sid,
        {"c_index": c},
        T0 + timedelta(minutes=minutes),
        T0 + timedelta(minutes=minutes + 1),
    )


def test_leaderboard_best_latest_and_ties() -> None:
    entries = [_e("a", 1, 0.70, 0), _e("a", 2, 0.60, 10), _e("b", 3, 0.70, 5), _e("c", 4, 0.50, 1)]
    rows = build_leaderboard(2, entries)
    # best per team: a#1 (0.70), b#3 (0.70) tie for places 1-2 -> 1.5 each; c#4 -> 3
    assert [(r["team"], r["submission_id"], r["rank"]) for r in rows] == [
        ("a", 1, 1.5),
        ("b", 3, 1.5),
        ("c", 4, 3.0),
    ]
    assert rows[0]["submitted_at"] == "2025-06-01T00:00:00Z"
    latest = build_leaderboard(2, entries, selection="latest")
    # latest per team: a#2 (0.60), b#3 (0.70), c#4 (0.50)
    assert [(r["team"], r["submission_id"], r["rank"]) for r in latest] == [
        ("b", 3, 1.0),
        ("a", 2, 2.0),
        ("c", 4, 3.0),
    ]
    # a team's equal best submissions: the earliest one stands
    assert build_leaderboard(2, [_e("a", 7, 0.8, 9), _e("a", 5, 0.8, 3)])[0]["submission_id"] == 5
    assert build_leaderboard(2, []) == []
    assert format_rank(1.0) == "1" and format_rank(2.5) == "2.5"
    csv = leaderboard_csv(2, rows).splitlines()
    assert (
        csv[0] == "rank,team,submission_id,c_index,rank_c_index,rank_final,submitted_at,scored_at"
    )
    assert csv[1].startswith("1.5,a,1,0.7,1.5,1.5,")


def test_task1_leaderboard_uses_the_hecktor_rule() -> None:
    m = [
        {"gtvp_dsc_mean": 0.80, "gtvn_dsc_agg": 0.70, "gtvn_f1_agg": 0.60},
        {"gtvp_dsc_mean": 0.75, "gtvn_dsc_agg": 0.72, "gtvn_f1_agg": 0.65},
        {"gtvp_dsc_mean": 0.80, "gtvn_dsc_agg": 0.60, "gtvn_f1_agg": 0.50},
        {"gtvp_dsc_mean": 0.50, "gtvn_dsc_agg": 0.72, "gtvn_f1_agg": 0.70},
    ]
    entries = [Entry(t, i, m[i], T0) for i, t in enumerate("ABCD")]
    # worked out in tests/evaluator/test_ranking.py: A 1, B and D 2.5, C 4
    rows = build_leaderboard(1, entries)
    assert [(r["team"], r["rank"]) for r in rows] == [
        ("A", 1.0),
        ("B", 2.5),
        ("D", 2.5),
        ("C", 4.0),
    ]
    assert rows[0]["ranks"]["gtvn"] == 3.0

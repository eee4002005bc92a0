"""Pure parts of the service: settings, tokens, leaderboard selection, type sniffing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.api.multipart import sniff_type
from app.errors import UnsupportedType
from app.formatting import format_rank
from app.security import new_token, token_hash
from app.services.board_rows import Entry, build_leaderboard
from app.services.exports import leaderboard_csv
from app.settings import Settings

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def test_settings_defaults_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for k in ("DATA_DIR", "DATABASE_URL", "ORGANIZER_TOKEN", "DISPATCHER", "WORKERS"):
        monkeypatch.delenv(f"HECKTOR_{k}", raising=False)
    s = Settings()
    assert s.data_dir == (tmp_path / "hecktor-data").resolve()
    assert s.db_url == f"sqlite:///{tmp_path.resolve() / 'hecktor-data' / 'hecktor.db'}"
    assert s.max_upload_bytes == 2 << 30 and s.daily_limit == 5 and s.dispatcher == "local"
    assert s.organizer_token is None and s.n_workers >= 1
    monkeypatch.setenv("HECKTOR_ORGANIZER_TOKEN", "x" * 40)
    monkeypatch.setenv("HECKTOR_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("HECKTOR_WORKERS", "3")
    s = Settings()
    assert isinstance(s.organizer_token, SecretStr) and "x" * 40 not in repr(s)
    assert s.data_dir == tmp_path / "d" and s.n_workers == 3
    assert Settings.from_dict(s.to_dict()).organizer_token.get_secret_value() == "x" * 40  # type: ignore[union-attr]
    monkeypatch.setenv("HECKTOR_DISPATCHER", "kafka")
    with pytest.raises(ValidationError):
        Settings()


def test_production_refuses_a_short_organizer_token() -> None:
    with pytest.raises(ValidationError, match="shorter than 32"):
        Settings(_env_file=None, mode="production", organizer_token="short")  # type: ignore[call-arg]


def test_tokens() -> None:
    toks = {new_token() for _ in range(200)}
    assert len(toks) == 200 and all(len(t) >= 43 and not t.startswith("-") for t in toks)
    assert token_hash("a") == token_hash("a") != token_hash("b") and len(token_hash("a")) == 64


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


@pytest.mark.parametrize(
    ("head", "task", "kind"),
    [
        (b"PK\x03\x04rest", 1, "zip"),
        (b"PK\x05\x06" + bytes(18), 2, "zip"),
        (b"\x1f\x8b\x08\x00", 1, "tar.gz"),
        (bytes(257) + b"ustar\x0000" + bytes(100), 1, "tar"),
        (b"PatientID,Prediction\n", 2, "csv"),
        (b"\xef\xbb\xbf PatientID;Prediction\n", 3, "csv"),
        (b'  [{"PatientID": "A"}]', 2, "json"),
        (b'{"A-1": 0.3}', 3, "json"),
        ("PatientID,Prédiction\n".encode()[:24], 3, "csv"),  # a character cut at the end
    ],
)
def test_sniff(head: bytes, task: int, kind: str) -> None:
    assert sniff_type(head, task) == kind


def test_sniff_refuses_with_a_message() -> None:
    with pytest.raises(UnsupportedType, match=r"Task 1 expects a \.zip, \.tar or \.tar\.gz"):
        sniff_type(b"PatientID,Prediction\n", 1)
    with pytest.raises(UnsupportedType, match="bzip2"):
        sniff_type(b"BZh91AY&SY", 2)
    with pytest.raises(UnsupportedType, match="unknown type"):
        sniff_type(b"\x00\x01\x02binary", 3)

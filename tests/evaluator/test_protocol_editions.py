"""Editions of the rules: the 2025 protocol pinned byte for byte, dispatch on ``name``,
built-in names, and the 2026 protocol's switches and their serialisation."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from evaluator.editions import BUILTIN_NAMES
from evaluator.protocol import (
    HECKTOR2025,
    HECKTOR2026,
    Hecktor2026Protocol,
    Protocol,
    builtin_protocol,
    resolve_protocol,
)
from evaluator.registry import BY_NAME, leaderboard_metrics, metrics_of, ranked_metrics

# The 2025 protocol as recorded in every result scored since protocol 1.0.0.
JSON_2025 = (
    '{"affine_atol":0.001,"center_columns":["CenterID","Center"],"connectivity":26,'
    '"dsc_agg_weighting":"physical","geometry_mismatch":"reject","gtvp_both_empty":"1.0",'
    '"hpv_column":"HPV Status","hpv_threshold":0.5,"id_column":"PatientID",'
    '"ignore_extra_cases":false,"iou_strict":false,"iou_threshold":0.3,"name":"hecktor2025",'
    '"rfs_event_column":"Relapse","rfs_time_column":"RFS","version":"1.0.0"}'
)
SHA_2025 = "bb1e083a7c9c8ffb0e3e8bad5861be62c9ca961be60bde3607df3ebf596a4fb7"


def test_the_2025_protocol_is_byte_identical() -> None:
    assert HECKTOR2025.to_json() == JSON_2025
    assert HECKTOR2025.sha256 == SHA_2025 == hashlib.sha256(JSON_2025.encode()).hexdigest()
    assert type(HECKTOR2025) is Protocol and Protocol() == HECKTOR2025
    back = Protocol.from_json(JSON_2025)
    assert type(back) is Protocol and back == HECKTOR2025
    assert builtin_protocol("hecktor2025") == HECKTOR2025


def test_from_dict_dispatches_on_the_name() -> None:
    p = Protocol.from_json(HECKTOR2026.to_json())
    assert type(p) is Hecktor2026Protocol and p == HECKTOR2026
    assert Protocol.from_dict({"name": "hecktor2026", "rfs_meaning": "time"}).rfs_meaning == "time"  # type: ignore[attr-defined]
    # a name that is no edition is a variant of the 2025 rules, as before editions
    custom = Protocol.from_dict({"name": "my-rules", "hpv_threshold": 0.4})
    assert type(custom) is Protocol and custom.hpv_threshold == 0.4
    # a 2026 field is not a 2025 one
    with pytest.raises(ValueError, match=r"unknown protocol field.*rfs_meaning"):
        Protocol.from_dict({"name": "hecktor2025", "rfs_meaning": "time"})
    # and a 2025-only field is not a 2026 one
    with pytest.raises(ValueError, match=r"unknown protocol field.*hpv_threshold"):
        Protocol.from_dict({"name": "hecktor2026", "hpv_threshold": 0.5})
    # a misspelt edition name with that edition's fields says why they are unknown
    with pytest.raises(ValueError) as info:
        Protocol.from_dict({"name": "hecktor2062", "dsc_mode": "aggregated"})
    assert str(info.value).endswith(
        "'hecktor2062' is not an edition (hecktor2025, hecktor2026), so the file is read "
        "as a variant of hecktor2025: give the edition's name to use its fields"
    )


def test_builtin_names_and_files(tmp_path: Path) -> None:
    assert BUILTIN_NAMES == ("hecktor2025", "hecktor2026")
    assert resolve_protocol("hecktor2026") == HECKTOR2026
    f = tmp_path / "p.json"
    f.write_text(json.dumps({"name": "hecktor2026", "dsc_mode": "aggregated"}))
    loaded = resolve_protocol(f)
    assert isinstance(loaded, Hecktor2026Protocol) and loaded.dsc_mode == "aggregated"
    with pytest.raises(ValueError, match="hecktor2027: neither a built-in protocol"):
        resolve_protocol("hecktor2027")
    with pytest.raises(ValueError, match="unknown protocol 'x'"):
        builtin_protocol("x")


def test_2026_round_trip_and_hash_covers_every_switch() -> None:
    d = HECKTOR2026.to_dict()
    assert "hpv_threshold" not in d and "hpv_column" not in d
    assert d["stage_aliases"] == {"N2A": "N2", "N2B": "N2", "N2C": "N2", "T4A": "T4", "T4B": "T4"}
    assert Protocol.from_dict(json.loads(HECKTOR2026.to_json())) == HECKTOR2026
    variants = [
        HECKTOR2026.with_changes(dsc_mode="aggregated"),
        HECKTOR2026.with_changes(gtvn_both_empty="exclude"),
        HECKTOR2026.with_changes(rfs_meaning="time"),
        HECKTOR2026.with_changes(task_weights=(0.25, 0.35, 0.40)),
        HECKTOR2026.with_changes(t_stage_column="T"),
    ]
    hashes = {HECKTOR2026.sha256, *(v.sha256 for v in variants)}
    assert len(hashes) == 6
    for v in variants:
        assert Protocol.from_json(v.to_json()) == v


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"dsc_mode": "mean"}, "dsc_mode must be 'per_patient' or 'aggregated'"),
        ({"gtvn_both_empty": "2.0"}, "gtvn_both_empty must be"),
        ({"rfs_meaning": "days"}, "rfs_meaning must be 'risk' or 'time'"),
        ({"task_weights": (0.0, 0.0, 0.0)}, "task_weights must be three weights"),
        ({"task_weights": (1.0, -1.0, 1.0)}, "task_weights must be three weights"),
        ({"stage_aliases": (("N2D", "N9"),)}, "stage_aliases must map onto allowed stages"),
        ({"t_stages": ("T1", "T1")}, "t_stages must list distinct stages"),
    ],
)
def test_2026_invalid_switches_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HECKTOR2026.with_changes(**changes)


def test_stage_normalisation() -> None:
    p = HECKTOR2026
    assert [p.stage_of(s) for s in ("t2", " N2b ", "T4A", "n0", "N2C", "T5", "")] == [
        "T2",
        "N2",
        "T4",
        "N0",
        "N2",
        None,
        None,
    ]


def test_registry_is_per_edition_with_unique_names() -> None:
    names_2025 = [m.name for t in (1, 2, 3) for m in metrics_of(t)]
    names_2026 = [m.name for t in (1, 2, 3) for m in metrics_of(t, "hecktor2026")]
    assert not set(names_2025) & set(names_2026)
    assert set(BY_NAME) == set(names_2025) | set(names_2026)
    assert [m.name for m in ranked_metrics(1, HECKTOR2026)] == ["seg_dsc"]
    assert [m.name for m in ranked_metrics(2, HECKTOR2026)] == ["rfs_cindex"]
    assert [m.name for m in ranked_metrics(3, HECKTOR2026)] == ["staging_bacc"]
    assert leaderboard_metrics(1) == ("gtvp_dsc_mean", "gtvn_dsc_agg", "gtvn_f1_agg")
    assert leaderboard_metrics(3, HECKTOR2026)[:3] == ("staging_bacc", "t_bacc", "n_bacc")
    assert all(BY_NAME[n].higher_is_better for n in names_2026)


def _content_digest(root: Path) -> str:
    """SHA-256 over every file's content, NIfTI files gunzipped (the content, not one
    zlib build's compressed bytes)."""
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(root).as_posix()
        data = p.read_bytes()
        parts = [("", data)]
        if p.name.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                parts = [
                    (i.filename, z.read(i)) for i in sorted(z.infolist(), key=lambda i: i.filename)
                ]
        for name, blob in parts:
            if name.endswith(".gz") or rel.endswith(".gz"):
                blob = gzip.decompress(blob)
            h.update(f"{rel}!{name}\0".encode())
            h.update(hashlib.sha256(blob).digest())
    return h.hexdigest()


def test_the_2025_synthetic_challenge_is_unchanged(tmp_path: Path) -> None:
    from evaluator.synth import generate_challenge
    from evaluator.synth.manifest import INPUTS_LAYOUT

    generate_challenge(tmp_path / "s", seed=0, small=True)
    # the algorithm inputs came later: without them (and their manifest line) the files
    # are those of `hecktor-eval synth --small` (seed 0) before the 2026 edition existed
    shutil.rmtree(tmp_path / "s" / "inputs")
    manifest = tmp_path / "s" / "manifest.json"
    line = f',\n  "inputs": "{INPUTS_LAYOUT}"'
    text = manifest.read_text(encoding="utf-8")
    assert line in text
    manifest.write_text(text.replace(line, ""), encoding="utf-8")
    assert _content_digest(tmp_path / "s") == (
        "56aadb073188bb664a76179586e4cae70ea09c47d1043db3ea3e879a3f4be4d9"
    )

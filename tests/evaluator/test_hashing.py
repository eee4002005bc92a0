"""Hashes that identify stored things must never change: the protocol's, and the
canonical JSON every stored result, freeze and analysis key is hashed from."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

from evaluator.canonical import canonical_json, canonical_sha256
from evaluator.io.hashing import combine_hashes, sha256_tree
from evaluator.protocol import HECKTOR2025, Protocol


def test_protocol_hashes_are_the_recorded_ones() -> None:
    # recorded in every result scored since protocol 1.0.0
    assert HECKTOR2025.sha256 == "bb1e083a7c9c8ffb0e3e8bad5861be62c9ca961be60bde3607df3ebf596a4fb7"
    assert HECKTOR2025.to_json().startswith('{"affine_atol":0.001,"center_columns":["CenterID"')
    p = Protocol(gtvp_both_empty="exclude")
    assert p.sha256 == hashlib.sha256(p.to_json().encode()).hexdigest() != HECKTOR2025.sha256


def test_canonical_json_is_sorted_compact_ascii_with_str_fallback() -> None:
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    doc = {"b": [1, 2.5, None], "a": {"z": "Zürich", "y": when, "x": Path("p/q")}}
    text = canonical_json(doc)
    assert text == (
        b'{"a":{"x":"p/q","y":"2025-01-02 03:04:05+00:00","z":"Z\\u00fcrich"},"b":[1,2.5,null]}'
    )
    assert canonical_sha256(doc) == hashlib.sha256(text).hexdigest()
    same = json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    assert text == same


def test_tree_and_combined_hashes(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.txt").write_bytes(b"bee")
    (tmp_path / "a.txt").write_bytes(b"ay")
    h = hashlib.sha256()
    for rel, data in (("a.txt", b"ay"), ("d/b.txt", b"bee")):
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\n")
    assert sha256_tree(tmp_path) == h.hexdigest()
    assert combine_hashes([("b", "2"), ("a", "1")]) == combine_hashes([("a", "1"), ("b", "2")])
    assert combine_hashes([("a", "1")]) == hashlib.sha256(b"a\x001\n").hexdigest()

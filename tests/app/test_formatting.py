"""app.formatting: table cells, ranks, CSV cells and metric labels as every layer writes them."""

from __future__ import annotations

import math

from app.formatting import as_finite, csv_number, format_number, format_rank, metric_label


def test_table_cells() -> None:
    assert format_number(None) == "–" and format_number(None, missing="n/a") == "n/a"
    assert format_number(0.123456) == "0.1235" and format_number(0.123456, digits=3) == "0.123"
    assert format_number(7) == "7" and format_number(True) == "yes" and format_number(False) == "no"
    assert format_number(math.nan) == "–" and format_number(math.inf, missing="n/a") == "n/a"
    assert format_number("CHUM-001") == "CHUM-001"


def test_ranks() -> None:
    assert format_rank(1.0) == "1" and format_rank(2.5) == "2.5" and format_rank(3) == "3"
    assert format_rank(None) == "" and format_rank(None, missing="n/a") == "n/a"
    assert format_rank(math.nan, missing="n/a") == "n/a"


def test_csv_cells_keep_full_precision() -> None:
    assert csv_number(None) == "" and csv_number(0.1 + 0.2) == "0.30000000000000004"
    assert csv_number(3) == "3" and float(csv_number(1 / 3)) == 1 / 3


def test_finite_numbers_and_labels() -> None:
    assert as_finite("0.5") == 0.5 and as_finite(2) == 2.0
    assert as_finite(None) is None and as_finite("x") is None and as_finite(math.inf) is None
    assert metric_label("gtvp_dsc_mean") == "GTVp DSC (mean)" and metric_label("other") == "other"

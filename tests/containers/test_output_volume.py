"""The size-capped output volume on its own (root: a loop-mounted ext4)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from app.algorithms.output_volume import full, is_capped, sized_output, used_bytes
from tests.containers.conftest import unavailable

pytestmark = pytest.mark.containers


@pytest.fixture(autouse=True)
def _root() -> None:
    if os.geteuid() != 0:
        unavailable("the capped output volume needs root (a loop mount)")


def test_volume_is_empty_owned_by_the_container_user_and_capped(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with sized_output(out, 8 * 2**20) as d:
        assert d == out and is_capped(d)
        assert os.listdir(d) == []  # no lost+found: it would count as an output
        assert (os.stat(d).st_uid, os.stat(d).st_gid) == (65534, 65534)
        assert not full(d)
        with pytest.raises(OSError) as exc, open(d / "big", "wb") as fh:
            for _ in range(100):
                fh.write(b"\x01" * 2**20)
                fh.flush()
        assert exc.value.errno == errno.ENOSPC
        assert full(d)
        # at least the cap, at most a little more
        assert 8 * 2**20 <= used_bytes(d) <= 9 * 2**20
        image = tmp_path / ".out.ext4"
        assert image.stat().st_blocks * 512 <= 9 * 2**20
    assert not out.exists() and not image.exists() and not os.path.ismount(out)


def test_links_in_the_volume_are_not_followed_on_the_host(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host data")
    with sized_output(tmp_path / "out", 8 * 2**20) as d:
        os.symlink(secret, d / "output.mha")
        with pytest.raises(OSError) as exc:
            (d / "output.mha").read_text()
        assert exc.value.errno == errno.ELOOP
        with pytest.raises(OSError) as hard:
            os.link(secret, d / "hard")
        assert hard.value.errno == errno.EXDEV


def test_volume_goes_even_when_the_block_fails(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="judge failed"), sized_output(out, 2**20) as d:
        (d / "x").write_bytes(b"x")
        raise RuntimeError("judge failed")
    assert not out.exists() and not os.path.ismount(out)
    assert list(tmp_path.iterdir()) == []


def test_cap_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive"), sized_output(tmp_path / "o", 0):
        pass
    assert not (tmp_path / "o").exists()

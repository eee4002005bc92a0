"""An archive's members as a read-only tree of paths, for the Task 2/3 table reader:
every member's name and declared size, and the bytes of the few members read."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evaluator.io.archive import Scan
from evaluator.io.members import Want
from evaluator.protocol import Limits


class _Stat:
    __slots__ = ("st_size",)

    def __init__(self, size: int) -> None:
        self.st_size = size


class TreePath:
    """A file or folder of an archive, as the table reader sees it: every member's
    name and declared size, and the bytes of the members that were read (the tables),
    without anything written to disk. Reading a member that was not read raises
    :class:`OSError` with the reason."""

    def __init__(self, name: str, tree: dict[str, Any], why: str = "") -> None:
        self.name = name
        self._tree = tree  # folder: name -> TreePath; file: {"": (size, bytes | None)}
        self._why = why

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def is_file(self) -> bool:
        return self._why != "missing" and "" in self._tree

    def is_dir(self) -> bool:
        return self._why != "missing" and "" not in self._tree

    def iterdir(self) -> Iterator[TreePath]:
        return iter([v for k, v in self._tree.items() if k])

    def __truediv__(self, other: str) -> TreePath:
        child = self._tree.get(other)
        return child if isinstance(child, TreePath) else TreePath(other, {}, "missing")

    def exists(self) -> bool:
        return self._why != "missing"

    def stat(self) -> _Stat:
        entry = self._tree.get("")
        if entry is None or self._why == "missing":
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), self.name)
        return _Stat(entry[0])

    def read_bytes(self) -> bytes:
        entry = self._tree.get("")
        if entry is None or entry[1] is None:
            reason = self._why or "not a file this task reads"
            raise OSError(errno.EFBIG, reason)
        data: bytes = entry[1]
        return data


def read_tree(path: Path, *, limits: Limits, want: Want, cap: int) -> TreePath:
    """The members of the archive ``path`` as a tree; the members ``want`` selects are
    read, each up to ``cap`` bytes and all together up to ``cap`` bytes (a member over
    it keeps only its declared size, for the reader to refuse)."""
    scan = Scan(path, limits=limits, want=want)
    contents: dict[int, bytes | None] = {}
    why: dict[int, str] = {}
    total = 0
    for m, stream in scan:
        if m.size > cap:
            continue  # refused by its declared size, never read
        f = stream if stream is not None else m.ref.open() if m.ref is not None else None
        if f is None:  # pragma: no cover
            continue
        try:
            data = f.read(cap + 1)
        finally:
            if stream is None:
                f.close()
        if total + len(data) > cap:
            why[id(m)] = (
                f"the table files of the submission together hold more than {cap:,} bytes, "
                "the limit for this phase's prediction tables"
            )
            continue
        total += len(data)
        contents[id(m)] = data
    scan.finish()
    root: dict[str, Any] = {}
    for m in scan.members:
        node = root
        parts = m.name.split("/")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, TreePath):
                child = node[part] = TreePath(part, {})
            node = child._tree
        node[parts[-1]] = TreePath(
            parts[-1], {"": (m.size, contents.get(id(m)))}, why.get(id(m), "")
        )
    return TreePath(scan.archive, root)

"""What the evaluation container refuses: grand-challenge inputs that cannot be scored."""

from __future__ import annotations

from collections.abc import Iterable

from evaluator.errors import EvaluatorError

MAX_SHOWN = 5


class GCInputError(EvaluatorError):
    """The evaluation's input (predictions.json, the jobs' outputs or the ground truth)
    cannot be scored. ``problems`` lists every problem found; ``str()`` is one line
    (grand-challenge shows the last line of stderr)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = [p.replace("\n", " ") for p in problems]
        if not self.problems:
            raise ValueError("GCInputError needs at least one problem")
        n = len(self.problems)
        head = "; ".join(self.problems[:MAX_SHOWN])
        more = f" (and {n - MAX_SHOWN} more)" if n > MAX_SHOWN else ""
        prefix = "" if n == 1 else f"{n} problems: "
        super().__init__(f"{prefix}{head}{more}")

"""The built-in editions of the rules, one module each; importing the package
registers them all (:func:`evaluator.editions.base.register_edition`).

A further edition is one module here that subclasses the protocol of the edition it
extends, declares its metrics, degenerate cases and tasks, registers itself under its
name, and is imported below. Its scoring components (``TaskSpec.kind``) are those of
:mod:`evaluator.metrics.aggregate`.
"""

from evaluator.editions import hecktor2025, hecktor2026

__all__ = ["BUILTIN_NAMES", "hecktor2025", "hecktor2026"]

BUILTIN_NAMES: tuple[str, ...] = ("hecktor2025", "hecktor2026")

"""hecktor-eval: exact, fast scoring for HECKTOR-style PET/CT challenges.

Kept light on purpose: heavy libraries (lifelines, scikit-learn) are imported inside
the modules that use them, so ``import evaluator`` and the CLI start fast.
"""

__version__ = "0.1.0"
EVALUATOR_VERSION = __version__

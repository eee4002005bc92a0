"""hecktor-eval service: upload API, judging jobs, leaderboards and pages.

``app`` depends on :mod:`evaluator`, never the reverse. Entry points:

- :func:`app.main.create_app` builds the FastAPI application;
- :mod:`app.cli` adds the ``serve``, ``admin``, ``submit`` and ``demo`` commands;
- ``python -m app ...`` runs those commands without the ``hecktor-eval`` script.
"""

__all__: list[str] = []

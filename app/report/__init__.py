"""Analysis material for leaderboard pages and the phase report.

- :mod:`app.report.plots`: server-rendered SVG plots (per-case DSC, rank stability,
  per-centre heat map), each returned as an inline ``<svg>`` string;
- :mod:`app.report.render`: :class:`TaskReportData` and :func:`render_report`, one
  self-contained HTML file (inline CSS and SVG, no external resource).

Independent of the database: callers feed it from stored rows.
"""

from app.report.render import TaskReportData, TeamRow, build_task_report, render_report

__all__ = ["TaskReportData", "TeamRow", "build_task_report", "render_report"]

"""Self-contained HTML reports of a ``segqc score`` report directory."""

from segqc.report.html import render_report

__all__ = ["render_report"]

"""`study report`: the published study's Tables 2 to 6 rebuilt from a sweep's MLflow runs, with
their spread over seeds, beside the paper's figures.

`selection` chooses the runs, `tables` and `stats` compute, `analysis` puts the tables
together, `sections` write the text and figures (one module per section), `document` puts the
sections in order, `render` turns it into Markdown and HTML, and `build` is the thin layer that
reads the store and writes the files.
"""

from study.report.build import build_report
from study.report.selection import ReportError

__all__ = ["ReportError", "build_report"]

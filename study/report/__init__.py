"""`study report`: the published study's Tables 2 to 6 rebuilt from a sweep's MLflow runs, with
their spread over seeds, beside the paper's figures.

`selection` chooses the runs, `tables` and `stats` compute, and `analysis` puts the tables
together.
"""

from study.report.selection import ReportError

__all__ = ["ReportError"]

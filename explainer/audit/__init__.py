"""Batch audits: explain a data set, checkpointed per chunk in a job store, then summarised
in an HTML report (no Flask here).

`runner` explains chunks and checkpoints them; `store` holds jobs and per-row results;
`worker` runs queued jobs in a background thread; `aggregate` and `report` summarise;
`io` reads data sets and exports results; `ray_engine` (imported on demand) runs the same
chunks on Ray actors.
"""

from explainer.audit.aggregate import AuditSummary, summarise
from explainer.audit.report import ReportContext, audit_report, render_report
from explainer.audit.runner import (
    AuditSpec,
    LocalExecutor,
    explain_chunk,
    rehearse,
    row_seed,
    run_job,
    validate,
)
from explainer.audit.store import AuditStore, Job, LeaseLost
from explainer.audit.worker import AuditWorker

__all__ = [
    "AuditSpec",
    "AuditStore",
    "AuditSummary",
    "AuditWorker",
    "Job",
    "LeaseLost",
    "LocalExecutor",
    "ReportContext",
    "audit_report",
    "explain_chunk",
    "rehearse",
    "render_report",
    "row_seed",
    "run_job",
    "summarise",
    "validate",
]

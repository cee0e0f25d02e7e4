"""Run wing: what happens in a run, from the data interval to the published partition.

- ``planner``: the one plan maker (``make_plan``) of every entry point.
- ``plan``: a run cut into steps a scheduler retries one by one (plan, validate, score chunk, publish,
  record); the DAG calls these. ``runplan``: the frozen ``RunPlan`` they pass (JSON in/out for XComs).
- ``targets``: where the one publish step writes (a (day, model) partition or a job).
- ``pipeline``: the local driver (``run_day``: extract, gate, score in chunks, stage, publish) and the
  ``finish_run`` / ``record_failure`` both drivers share.
- ``chunks``: score and stage chunks, serially or over a process pool.
- ``sizing``: chunk rows from a memory budget.
- ``backfill``: each day of a range, sequentially.
- ``model_choice``: which version scores a day (explicit, pinned, the alias now or on that day) and the rule.
- ``late``: re-score recent days whose source rows changed after they were scored (``schedule.recheck_days``).

May import: ``quality``, ``reports``, ``models``, ``storage`` and the ground floor. Never ``cli``.
"""

from __future__ import annotations

from scoring.run.pipeline import RunResult, run_day

__all__ = ["RunResult", "run_day"]

"""Data quality: Great Expectations suites per model version, compiled to a vectorized row gate.

- ``suite``: generate, write and read the GX 1.x suite JSON (``schemas/<model>/v<version>.json``).
- ``compile``: turn a suite into plain rules (no GX import; workers receive them pickled).
- ``gate``: apply the rules to one Arrow chunk: cast, quarantine failing rows, count.
- ``report``: merge chunk counts, evaluate batch-level rules and the error threshold.
- ``outputs``: checks on the staged predictions (no null score, [0, 1], one per key).
- ``docs``: GX Data Docs (HTML) of a run's validation.
- ``run``: what the pipeline calls before and after the chunks.

Great Expectations itself is imported only to build Data Docs (and by tests that compare the compiled
rules with GX's own validation): importing it costs several seconds.
"""

"""Quality wing: is this data fit to be scored, and is the run fit to be published?

Owns the data quality gate and everything it judges with:

- ``suite``: generate, write and read the GX 1.x suite JSON of a model version (``schemas/<model>/v<version>.json``).
- ``compile``: turn a suite into plain rules (no GX import; workers receive them pickled).
- ``gate``: apply the rules to one Arrow chunk: cast, quarantine failing rows, count.
- ``quarantine``: the quarantine rows (run, day, key, column, rule, value, whole row).
- ``schema_check``: the source's columns against the model's feature schema, under the schema-drift policy.
- ``batch_rules``: merge chunk counts, evaluate batch-level rules and the error threshold.
- ``output_checks``: checks on the staged predictions (no null score, [0, 1], one per key).
- ``drift``: PSI of each feature and of the score against the training reference.
- ``data_docs``: GX Data Docs (HTML) of runs' validations, built from the run ledger (never by a run).
- ``offline``: point the Data Docs pages at the CSS/JS shipped in ``assets/`` instead of public CDNs.
- ``run_checks``: what a run calls before its chunks (``prepare_quality``) and after them (``conclude_quality``).

May import: ``scoring.models`` (model versions, reference statistics, the signature), ``scoring.storage``
(source, results, staged chunk manifests) and the ground floor. Never ``run``, ``reports`` or ``cli``.

Great Expectations itself is imported only to build Data Docs (and by tests that compare the compiled
rules with GX's own validation): importing it costs several seconds.
"""

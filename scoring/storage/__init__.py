"""Storage wing: where data lives, behind small interfaces chosen by configuration in one place.

- ``sources``: source readers (DuckDB, PostgreSQL) streaming a data interval as Arrow record batches;
  ``open_source(cfg.source)``.
- ``results``: results stores (DuckDB, PostgreSQL): predictions, quarantine, the run ledger, summary
  tables and the report views, published atomically per (day, model); ``open_results(cfg.results)``.
- ``staging``: staged chunk outputs (Parquet + checksummed manifest) between scoring and publish.
- ``stagefs``: where staging lives, a local folder or an object store (``s3://``), through pyarrow's
  filesystems; ``staging_root(cfg.results)``, and the readers publish uses on staged files.
- ``checksums``: file checksums shared by the staging area and the model store.
- ``pgconn``: PostgreSQL connections with retry, one-line errors and redacted credentials.
- ``connections``: the one mapping of Airflow Connections (``AIRFLOW_CONN_*``) onto the configuration.

May import: only the ground floor (``config``, ``dates``, ``sqlident``, ``errors``). This package's own
import is light (no pyarrow, DuckDB or drivers): the DAG file imports ``storage.connections`` at parse time.
"""

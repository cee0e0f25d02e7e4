"""``labels.query`` goes through the job-query guard (DuckDB's parse tree) and runs on a sandboxed connection:
a labels query cannot read files, the environment or settings; a plain SELECT over the labels database works."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from scoring.config import LabelsConfig
from scoring.errors import ConfigError, SourceError
from scoring.storage.labels import read_labels

SECRET = "TOPSECRET-labels-9e1"


@pytest.fixture()
def labels_db(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "labels.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE outcomes (id VARCHAR, y INTEGER, seen TIMESTAMP)")
        con.execute("INSERT INTO outcomes VALUES ('a', 1, TIMESTAMP '2026-03-08 10:00'), "
                    "('b', 0, TIMESTAMP '2026-03-09 10:00')")
    secret = tmp_path / "secret.csv"
    secret.write_text(f"id,y,seen\n{SECRET},1,2026-03-08 10:00\n")
    return db, secret


def _cfg(db: Path, query: str) -> LabelsConfig:
    return LabelsConfig(kind="duckdb", path=db, query=query, key_column="id", label_column="y",
                        observed_at_column="seen")


def test_a_plain_labels_query_is_read(labels_db: tuple[Path, Path]) -> None:
    frame = read_labels(_cfg(labels_db[0], "SELECT id, y, seen FROM outcomes WHERE y IS NOT NULL"),
                        dt.date(2026, 3, 1), "UTC")
    assert sorted(frame["key"]) == ["a", "b"] and sorted(frame["label"]) == [0, 1]


@pytest.mark.parametrize("query", [
    "SELECT * FROM read_csv('{secret}')",
    "SELECT * FROM '{secret}'",
    "SELECT getenv('HOME') AS id, 1 AS y, now() AS seen",
    "SELECT current_setting('temp_directory') AS id, 1 AS y, now() AS seen",
    "SELECT o.* FROM outcomes o, duckdb_settings() s",
    "SELECT * FROM outcomes; SELECT 1",
    "DELETE FROM outcomes",
])
def test_a_labels_query_reaching_outside_its_database_is_refused(labels_db: tuple[Path, Path], query: str) -> None:
    db, secret = labels_db
    with pytest.raises((ConfigError, SourceError)) as err:
        read_labels(_cfg(db, query.format(secret=secret)), dt.date(2026, 3, 1), "UTC")
    message = str(err.value)
    assert "\n" not in message and SECRET not in message, message
    if err.type is SourceError:  # a file named as a table passes the parse check; the sandbox refuses it
        assert "file system operations are disabled" in message, message
    else:
        assert message.startswith("labels.query"), message

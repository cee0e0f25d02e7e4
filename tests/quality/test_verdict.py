"""The plain verdict on Data Docs pages: failed, passed, or passed with warnings (GX alone says "Succeeded"
next to "2 unsuccessful expectations")."""

from __future__ import annotations

from pathlib import Path

from scoring.cli.docs import docs_verdict
from scoring.quality.batch_rules import QualityReport
from scoring.quality.data_docs import add_verdict, verdict


def test_the_verdict_says_warnings_and_the_page_and_cli_carry_it_once(tmp_path: Path) -> None:
    warned = QualityReport(100, 0, 0.05, warnings=["warning: expect_column_values_to_be_in_set on 'state': 7 rows"])
    failed = QualityReport(100, 60, 0.05, failures=["60 of 100 rows quarantined (60.0%)"])
    assert verdict(warned).startswith("Passed with 1 warning(s)") and "'state': 7 rows" in verdict(warned)
    assert verdict(failed).startswith("Failed: 60 of 100 rows quarantined")
    assert verdict(QualityReport(100, 0, 0.05)).startswith("Passed: ")
    assert verdict(QualityReport(100, 0, 0.05)).endswith("no row quarantined.")
    held = QualityReport(5000, 25, 0.05, warnings=["warning: expect_column_values_to_be_in_set on 'state': 84 rows"])
    assert "25 of 5,000 rows (0.50%) quarantined by critical row rules" in verdict(held)  # said, not only counted

    page = tmp_path / "validation.html"
    page.write_text("<html><body class='x'><h1>Succeeded</h1></body></html>", encoding="utf-8")
    add_verdict(page, verdict(warned))
    add_verdict(page, verdict(warned))  # rebuilt: replaced, not repeated
    text = page.read_text(encoding="utf-8")
    assert text.count("Run verdict.") == 1 and text.index("Run verdict.") < text.index("Succeeded")
    assert "&#x27;state&#x27;" in text  # escaped
    assert docs_verdict(page) == verdict(warned)

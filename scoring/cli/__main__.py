"""``python -m scoring.cli``: the same as the ``scoring`` command."""

from scoring.cli import app

app()

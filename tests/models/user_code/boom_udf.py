"""A user's own module (outside the installed packages): registered with ``--code``, as README requires."""

from __future__ import annotations

from typing import Any

import pandas as pd


def boom(values: Any) -> Any:
    """A transformer function that raises on rows whose ``tag`` is 'boom' (a model failing on some rows)."""
    frame = pd.DataFrame(values)
    tags = frame["tag"].astype(object)
    if (tags == "boom").any():
        raise ValueError("tag 'boom' cannot be encoded")
    return frame.drop(columns=["tag"])

"""A user's own transformer module (outside the installed packages, so registered with ``--code``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

COLS = ["credit_score", "annual_income"]
CUT = 600.0


def refuse_low_scores(values: pd.DataFrame) -> np.ndarray:
    """Raise on a credit score below ``CUT`` (the model of a challenger failing rows)."""
    frame = pd.DataFrame(values, columns=COLS)
    if (frame["credit_score"] < CUT).any():
        raise ValueError("credit_score below 600 cannot be encoded")
    return frame.fillna(0).to_numpy()

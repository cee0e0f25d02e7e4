"""Model metrics on labelled rows, per task (scikit-learn's metric functions).

Rows without a label (NULL/NaN) are normal in batch data: metrics use the labelled rows and report how many
were left out. Binary labels are compared with the positive class whatever their type (0/1, True/False,
text); multiclass labels must be among the model's classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from scoring.errors import ModelStoreError
from scoring.models.contract import Contract


def _match(labels: pd.Series, classes: list[Any]) -> np.ndarray:
    """Index of each label in ``classes`` (-1 when it is none of them); 1 and 1.0 and "1" are the same."""
    lookup: dict[Any, int] = {}
    for i, c in enumerate(classes):
        lookup.setdefault(c, i)
        lookup.setdefault(str(c), i)
        if isinstance(c, bool | np.bool_):
            lookup.setdefault(str(c).lower(), i)
    out = np.full(len(labels), -1, dtype=np.int64)
    for pos, value in enumerate(labels.tolist()):
        key = value.item() if hasattr(value, "item") else value
        if isinstance(key, float) and key.is_integer():
            key = int(key)
        out[pos] = lookup.get(key, lookup.get(str(key), -1))
    return out


def task_metrics(contract: Contract, outputs: np.ndarray, labels: pd.Series | None,
                 label_name: str = "label") -> dict[str, float]:
    """Metrics of the model's ``outputs`` (predict_proba n x k, or predict n) against ``labels``.

    Binary: ROC AUC, log loss, Brier score, positive rate (of the labels); multiclass: log loss, accuracy,
    macro F1; regression: RMSE, MAE, R². Always ``rows`` (labelled rows used) and ``unlabelled_rows``.
    Empty without labels; a metric that is undefined (one class only) is left out.

    Raises:
        ModelStoreError: classifier labels that are not among the model's classes (names a few), or
            regression labels that are not numbers.
    """
    if labels is None:
        return {}
    from sklearn import metrics as skm

    labelled = labels.notna().to_numpy()
    y, out = labels[labelled], outputs[labelled]
    result: dict[str, float] = {"rows": int(labelled.sum()), "unlabelled_rows": int((~labelled).sum())}
    if not labelled.any():
        return result
    if contract.task == "regression":
        try:
            truth = pd.to_numeric(y).to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelStoreError(f"label column {label_name!r} of a regression model holds non-numeric "
                                  f"values such as {y.iloc[0]!r}") from None
        result.update(rmse=float(np.sqrt(skm.mean_squared_error(truth, out))),
                      mae=float(skm.mean_absolute_error(truth, out)))
        if len(truth) > 1:
            result["r2"] = float(skm.r2_score(truth, out))
        return result
    classes = list(contract.classes)
    index = _match(y, classes)
    if (index < 0).any():
        odd = sorted({str(v) for v, i in zip(y.tolist(), index, strict=True) if i < 0})[:5]
        raise ModelStoreError(f"label column {label_name!r} has values that are not classes of the model "
                              f"{[str(c) for c in classes]}: {', '.join(map(repr, odd))}")
    if contract.task == "binary":
        pos = contract.positive_index
        truth = (index == pos).astype(np.int64)
        score = out[:, pos]
        result["positive_rate"] = float(truth.mean())
        result["brier"] = float(skm.brier_score_loss(truth, score))
        if truth.min() != truth.max():
            result["roc_auc"] = float(skm.roc_auc_score(truth, score))
            result["log_loss"] = float(skm.log_loss(truth, np.clip(score, 1e-15, 1 - 1e-15)))
        return result
    result["accuracy"] = float(np.mean(np.argmax(out, axis=1) == index))
    result["macro_f1"] = float(skm.f1_score(index, np.argmax(out, axis=1), average="macro",
                                            labels=list(range(len(classes)))))
    result["log_loss"] = float(skm.log_loss(index, np.clip(out, 1e-15, 1), labels=list(range(len(classes)))))
    return result


AUC_MARGIN = 0.05  # binary: a ROC AUC within this of 0.5 (or below it) is chance level


def chance_level(contract: Contract, metrics: dict[str, float], labels: pd.Series | None) -> str | None:
    """Why the metrics of the labelled training rows say the model cannot be right, or None.

    The rules (stated, deliberately loose: they catch misordered inputs and wrong labels, not weak models):
    binary, ROC AUC <= 0.5 + ``AUC_MARGIN``; multiclass, log loss no better than the labels' prior (always
    predicting the class frequencies); regression, R^2 <= 0 (no better than predicting the mean).
    """
    if not metrics or labels is None:
        return None
    if contract.task == "binary" and "roc_auc" in metrics and metrics["roc_auc"] <= 0.5 + AUC_MARGIN:
        return f"its ROC AUC on the labelled training rows is {metrics['roc_auc']:.3f} (chance is 0.5)"
    if contract.task == "regression" and "r2" in metrics and metrics["r2"] <= 0:
        return f"its R^2 on the labelled training rows is {metrics['r2']:.3f} (predicting the mean gives 0)"
    if contract.task == "multiclass" and "log_loss" in metrics:
        freq = labels.dropna().astype(str).value_counts(normalize=True).to_numpy()
        prior = float(-(freq * np.log(freq)).sum())
        if metrics["log_loss"] >= prior:
            return (f"its log loss on the labelled training rows is {metrics['log_loss']:.3f}, no better than "
                    f"the class frequencies' {prior:.3f}")
    return None

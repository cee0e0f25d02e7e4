"""The model-type matrix of the contract: each case of the compatibility suite (tests/models/cases.py) is fitted,
its contract inferred and its parity check run; prints task, inputs with their registered dtypes, and the
parity result (rows, max |diff|, seconds).

    .venv/bin/python benchmarks/contract_matrix.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from scoring.errors import ModelStoreError
    from scoring.models.parity import parity_check
    from scoring.models.registry import build_contract
    from tests.models.cases import cases, make_frame, training_rows

    train = training_rows(make_frame())
    print(f"{'case':28} {'task':10} {'inputs (dtype)':58} {'parity':>7} {'max|diff|':>9} {'s':>6}")
    for case in cases():
        # the training rows as the user gives them: key, timestamp, the inputs in order, the label
        frame = case.prepare(train)[list(dict.fromkeys(["id", "ts", *case.inputs, case.label]))]
        model = case.fit(train)
        features = case.register[case.register.index("--features") + 1].split(",") if "--features" in case.register \
            else None
        positive = case.register[case.register.index("--positive-class") + 1] if "--positive-class" in case.register \
            else None
        contract = build_contract(model, frame, case.name, positive_class=positive, features=features)
        inputs = ", ".join(f"{i.name}({i.dtype})" for i in contract.inputs)
        try:
            result = parity_check(model, frame, contract, case.name)
            print(f"{case.name:28} {contract.task:10} {inputs[:58]:58} {result['rows']:>7} "
                  f"{result['max_abs_diff']:>9.1e} {result['seconds']:>6.2f}")
        except ModelStoreError as exc:
            print(f"{case.name:28} {contract.task:10} {inputs[:58]:58} REFUSED {exc}")
    # The negative case: a NumPy-fitted model whose --features contradict the training file's column order.
    case = next(c for c in cases() if c.name == "numpy_fitted")
    model = case.fit(train)
    frame = case.prepare(train)[["id", "ts", "x2", "x3", "y_bin"]]
    contract = build_contract(model, frame, case.name, features=["x3", "x2"])
    try:
        parity_check(model, frame, contract, case.name)
        print("numpy_fitted, file order x2,x3 vs --features x3,x2: NOT refused")
    except ModelStoreError as exc:
        print(f"numpy_fitted, file order x2,x3 vs --features x3,x2: REFUSED: {exc}")


if __name__ == "__main__":
    main()

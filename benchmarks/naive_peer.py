"""The naive peer of `scoring serve`: a bare Starlette endpoint that unpickles the model and calls
``predict_proba`` on each request's row (no signature, no version, no batching). Run by bench_online.py:

    .venv/bin/python benchmarks/naive_peer.py MODEL.joblib PORT
"""

from __future__ import annotations

import sys

import joblib
import pandas as pd
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

MODEL = joblib.load(sys.argv[1])


async def predict(request: Request) -> JSONResponse:
    row = (await request.json())["row"]
    score = float(MODEL.predict_proba(pd.DataFrame([row]))[0, 1])
    return JSONResponse({"score": score})


async def ready(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ready"})


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)

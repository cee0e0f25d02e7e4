"""A small client of the Airflow 3 REST API (v2) for on-demand jobs: trigger, read and fail a DAG run.

Configured from the environment only (never from the YAML, so no secret lands in a config file):
``SCORING_AIRFLOW_URL`` (the api-server, e.g. ``http://airflow:8080``) and either ``SCORING_AIRFLOW_TOKEN``
(a JWT) or ``SCORING_AIRFLOW_USERNAME`` + ``SCORING_AIRFLOW_PASSWORD``, exchanged for a token at
``POST /auth/token`` as Airflow 3 does it. Plain ``urllib``: no Airflow import, every call has a timeout.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from scoring.errors import ScoringError

logger = logging.getLogger(__name__)

URL_ENV, USER_ENV, PASSWORD_ENV, TOKEN_ENV = ("SCORING_AIRFLOW_URL", "SCORING_AIRFLOW_USERNAME",
                                              "SCORING_AIRFLOW_PASSWORD", "SCORING_AIRFLOW_TOKEN")
JOBS_DAG_ID = "scoring_jobs"


class AirflowApiError(ScoringError):
    """The Airflow API refused a call or could not be reached (one line: method, path, status, detail)."""


@dataclass
class AirflowApi:
    """The endpoints jobs use, on one api-server."""

    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    dag_id: str = JOBS_DAG_ID
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls) -> AirflowApi | None:
        """The client when ``SCORING_AIRFLOW_URL`` is set, else None (jobs run embedded).

        Raises:
            ScoringError: the URL is set without a token or a username and password.
        """
        url = os.environ.get(URL_ENV, "").strip()
        if not url:
            return None
        api = cls(url.rstrip("/"), os.environ.get(USER_ENV), os.environ.get(PASSWORD_ENV),
                  os.environ.get(TOKEN_ENV) or None)
        if not api.token and not (api.username and api.password):
            raise ScoringError(f"{URL_ENV} is set: also set {TOKEN_ENV}, or {USER_ENV} and {PASSWORD_ENV}")
        return api

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self._token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - configured URL
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            try:
                detail = json.loads(detail).get("detail", detail)
            except (ValueError, AttributeError):
                pass
            raise AirflowApiError(f"Airflow API {method} {path}: HTTP {exc.code}: "
                                  f"{str(detail).strip().splitlines()[0] if str(detail).strip() else exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AirflowApiError(f"Airflow API at {self.url} unreachable ({method} {path}): {reason}") from None
        return json.loads(text) if text.strip() else {}

    def _token(self) -> str:
        if not self.token:
            answer = self._call("POST", "/auth/token", {"username": self.username, "password": self.password},
                                auth=False)
            self.token = answer["access_token"]
        return self.token

    def _run_path(self, run_id: str) -> str:
        return f"/api/v2/dags/{urllib.parse.quote(self.dag_id)}/dagRuns/{urllib.parse.quote(run_id, safe='')}"

    def trigger(self, run_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        """Create a manual DAG run with this id and conf (no logical date). Returns the DAG run."""
        return self._call("POST", f"/api/v2/dags/{urllib.parse.quote(self.dag_id)}/dagRuns",
                          {"dag_run_id": run_id, "logical_date": None, "conf": conf})

    def run_state(self, run_id: str) -> str:
        """The DAG run's state: queued, running, success or failed."""
        return str(self._call("GET", self._run_path(run_id))["state"])

    def run_note(self, run_id: str) -> str | None:
        """The DAG run's note (None when it has none)."""
        return self._call("GET", self._run_path(run_id)).get("note")

    def set_run_note(self, run_id: str, note: str) -> None:
        """Set the DAG run's note (at most 1,000 characters: Airflow's limit), nothing else of the run."""
        self._call("PATCH", self._run_path(run_id) + "?update_mask=note", {"note": note[:1000]})

    def fail_run(self, run_id: str) -> None:
        """Mark the DAG run failed (Airflow stops its unfinished tasks)."""
        self._call("PATCH", self._run_path(run_id), {"state": "failed"})

    def ensure_pool(self, name: str, slots: int, description: str) -> str:
        """Create pool ``name`` with ``slots`` slots, or set its slots if it exists. Returns ``created`` or
        ``updated``."""
        path = f"/api/v2/pools/{urllib.parse.quote(name, safe='')}"
        try:
            self._call("GET", path)
        except AirflowApiError as exc:
            if "HTTP 404" not in str(exc):
                raise
            self._call("POST", "/api/v2/pools", {"name": name, "slots": slots, "description": description})
            return "created"
        self._call("PATCH", path, {"name": name, "slots": slots, "description": description})
        return "updated"

"""fal.ai's model queue on a MockServer, as fal's own client reads it (research note 09:
fal-ai/fal@c6f0afa projects/fal_client/src/fal_client/client.py; the status shapes of its
tests/unit/test_client.py `test_parse_status`):

- POST /<owner>/<app>[/<subpath>] (header `Authorization: Key <key>`) → {request_id, status_url,
  response_url, cancel_url, status: IN_QUEUE}; the three URLs drop the model's subpath, as fal's do.
- GET .../requests/<id>/status → IN_QUEUE, then IN_PROGRESS `progress_polls` times, then COMPLETED
  (with `error` and `error_type` when `error` is given: a done job that failed).
- GET .../requests/<id> → the result (FLUX's output shape); 400 {"detail": ...} before COMPLETED.
- PUT .../requests/<id>/cancel → 202 {"status": "CANCELLATION_REQUESTED"}, recorded in `cancelled`.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

from mockserver import MockServer, Reply, Request


class FalQueue:
    def __init__(self, srv: MockServer, *, key: str = "fal-test-key", progress_polls: int = 1,
                 error: tuple[str, str] | None = None, result: dict[str, Any] | None = None,
                 url_base: str | None = None, cancel_reply: Reply | None = None) -> None:
        self.srv, self.key, self.progress_polls, self.error = srv, key, progress_polls, error
        self.result = result
        self.url_base = url_base  # where the reply's URLs point (default: this server)
        self.cancel_reply = cancel_reply or Reply.json({"status": "CANCELLATION_REQUESTED"}, status=202)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.cancelled: list[str] = []
        self._lock = threading.Lock()
        app = r"/(?P<app>[\w-]+/[\w.-]+)"
        srv.route("GET", re.compile(app + r"/requests/(?P<id>[\w-]+)/status"), self._status)
        srv.route("GET", re.compile(app + r"/requests/(?P<id>[\w-]+)"), self._result)
        srv.route("PUT", re.compile(app + r"/requests/(?P<id>[\w-]+)/cancel"), self._cancel)
        srv.route("POST", re.compile(app + r"(/[\w.-]+)?"), self._submit)

    def _denied(self, req: Request) -> Reply | None:
        if req.headers.get("authorization") == f"Key {self.key}":
            return None
        return Reply.json({"detail": "Unauthorized"}, status=401)

    def _submit(self, req: Request) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        job = str(uuid.uuid4())
        with self._lock:
            self.jobs[job] = {"input": req.json(), "polls": 0}
        base = f"{self.url_base or self.srv.url}/{req.params['app']}/requests/{job}"
        return Reply.json({"status": "IN_QUEUE", "request_id": job, "response_url": base, "status_url": base + "/status",
                           "cancel_url": base + "/cancel", "queue_position": 0})

    def _state(self, job: dict[str, Any]) -> str:
        return "IN_QUEUE" if job["polls"] <= 1 else "IN_PROGRESS" if job["polls"] <= 1 + self.progress_polls else "COMPLETED"

    def _status(self, req: Request) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        with self._lock:
            job = self.jobs.get(req.params["id"])
            if job is None:
                return Reply.json({"detail": "Request not found"}, status=404)
            job["polls"] += 1
            state = self._state(job)
        if state == "IN_QUEUE":
            return Reply.json({"status": "IN_QUEUE", "queue_position": 0})
        if state == "IN_PROGRESS":
            return Reply.json({"status": "IN_PROGRESS", "logs": None})
        if self.error is not None:
            return Reply.json({"status": "COMPLETED", "logs": [], "metrics": {}, "error": self.error[0],
                               "error_type": self.error[1]})
        return Reply.json({"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 1.5}})

    def _result(self, req: Request) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        with self._lock:
            job = self.jobs.get(req.params["id"])
            done = job is not None and self._state(job) == "COMPLETED"
        if not done:
            return Reply.json({"detail": "Request is still in progress"}, status=400)
        if self.result is not None:
            return Reply.json(self.result)
        return Reply.json({"images": [{"url": f"https://v3.fal.media/files/{req.params['id']}.png", "width": 1024,
                                       "height": 768, "content_type": "image/png"}],
                           "timings": {"inference": 1.22}, "seed": 920212137, "has_nsfw_concepts": [False],
                           "prompt": job["input"].get("prompt") if job else None})

    def _cancel(self, req: Request) -> Reply:
        if (denied := self._denied(req)) is not None:
            return denied
        with self._lock:
            self.cancelled.append(req.params["id"])
        return self.cancel_reply

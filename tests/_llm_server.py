"""A scripted, loopback-only stand-in for an OpenAI-compatible chat-completions server.

Tests of :mod:`hagfish_jax.shell.advisors.llm` talk to this server instead of a real
provider (imported as ``from _llm_server import ...``). It listens on ``127.0.0.1`` on
a free port, serves ``POST /v1/chat/completions`` from a daemon thread, and answers per
role: the role is read from the ``ROLE: <name>`` line of the system message.

A script maps a role to a list of steps, played one per request:

* a ``str``: the assistant's content, answered with status 200;
* an ``int`` or a :class:`Status`: an HTTP error (optionally with headers and a body);
* a :class:`Sleep`: wait that long before answering (to make the client time out),
  then answer with the role's last content.

Once a role's steps are used up, its last content step is repeated (its last step, when
it has no content step: ``[500]`` fails forever). Every request is
recorded (headers, parsed body, role), and any request body containing one of
:attr:`LLMServer.forbidden` (case-insensitive) is recorded in
:attr:`LLMServer.violations`.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["LLMServer", "Sleep", "Status"]

_ROLE_LINE = re.compile(r"^ROLE:\s*(\S+)\s*$", re.M)


@dataclass(frozen=True)
class Status:
    """An error answer: the status code, extra headers and an optional JSON body."""

    code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before answering (with the role's last content)."""

    seconds: float


Step = str | int | Status | Sleep


def completion(content: str, model: str) -> dict[str, Any]:
    """The body of a successful chat completion in the OpenAI shape."""
    return {
        "id": f"chatcmpl-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


class LLMServer:
    """The scripted server; use it as a context manager.

    Args:
      script: steps per role (see the module docstring).
      forbidden: strings no request body may contain.
      unsupported: ``response_format`` types this server refuses with status 400
        (``"json_schema"``, ``"json_object"``), like a server that lacks them.
    """

    def __init__(
        self,
        script: Mapping[str, Sequence[Step]] | None = None,
        forbidden: Sequence[str] = (),
        unsupported: Sequence[str] = (),
    ):
        self.script: dict[str, list[Step]] = {k: list(v) for k, v in (script or {}).items()}
        self.forbidden: list[str] = list(forbidden)
        self.unsupported = set(unsupported)
        self.requests: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._played: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not running"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LLMServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                owner._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- queries -----------------------------------------------------------------------
    def bodies(self, role: str | None = None) -> list[dict[str, Any]]:
        """The parsed request bodies, oldest first (only ``role``'s when given)."""
        return [r["body"] for r in self.requests if role is None or r["role"] == role]

    def count(self, role: str | None = None) -> int:
        return len(self.bodies(role))

    # -- serving -----------------------------------------------------------------------
    def _next_step(self, role: str) -> tuple[Step, str]:
        """The step to play for ``role`` and the content to use after a sleep."""
        steps = self.script.get(role) or ['{"note": "no script for this role"}']
        contents = [s for s in steps if isinstance(s, str)]
        with self._lock:
            i = self._played.get(role, 0)
            self._played[role] = i + 1
        if i < len(steps):
            step = steps[i]
            later = [s for s in steps[i:] if isinstance(s, str)]
            fallback = later[0] if later else (contents[-1] if contents else "{}")
            return step, fallback
        last = contents[-1] if contents else steps[-1]  # e.g. a status "forever"
        return last, contents[-1] if contents else "{}"

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        size = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(size).decode("utf-8", "replace")
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        system = ""
        if isinstance(body, dict):
            for message in body.get("messages") or []:
                if isinstance(message, dict) and message.get("role") == "system":
                    system = str(message.get("content") or "")
        found = _ROLE_LINE.search(system)
        role = found.group(1) if found else "?"
        lowered = raw.lower()
        with self._lock:
            self.requests.append(
                {
                    "path": handler.path,
                    "headers": {k.lower(): v for k, v in handler.headers.items()},
                    "body": body,
                    "role": role,
                }
            )
            for word in self.forbidden:
                if word.lower() in lowered:
                    self.violations.append({"role": role, "string": word})

        if handler.path.rstrip("/") != "/v1/chat/completions" or not isinstance(body, dict):
            self._send(handler, 404, {"error": {"message": "not found"}})
            return
        fmt = (body.get("response_format") or {}).get("type")
        if fmt in self.unsupported:
            message = f"response_format type {fmt!r} is not supported"
            self._send(handler, 400, {"error": {"message": message, "type": "invalid_request"}})
            return

        step, fallback = self._next_step(role)
        model = str(body.get("model", "?"))
        if isinstance(step, Sleep):
            time.sleep(step.seconds)
            step = fallback
        if isinstance(step, int):
            step = Status(step)
        if isinstance(step, Status):
            error = step.body
            if error is None:
                error = {"error": {"message": f"scripted status {step.code}", "type": "test"}}
            self._send(handler, step.code, error, step.headers)
            return
        self._send(handler, 200, completion(step, model))

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        code: int,
        payload: Any,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        try:
            handler.send_response(code)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:  # the client gave up (a timeout under test): nothing to answer
            pass

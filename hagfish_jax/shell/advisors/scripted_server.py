"""A loopback OpenAI-compatible server that plays scripted answers: for trying
``hagfish hpo --advisor llm`` offline and for tests.

It listens on ``127.0.0.1`` only, serves ``POST /v1/chat/completions`` from a daemon
thread, and answers per role: the role is read from the ``ROLE: <name>`` line of the
system message that every :mod:`hagfish_jax.shell.advisors.llm` role sends.

A script maps a role to a list of steps, played one per request:

* a ``str``: the assistant's content, answered with status 200;
* an ``int`` or a :class:`Status`: an HTTP error (optionally with headers and a body);
* a :class:`Sleep`: wait that long before answering (to make the client time out),
  then answer with the role's next (or last) content.

Once a role's steps are used up, its last content step is repeated (its last step, when
it has no content step: ``[500]`` fails forever). Every request is recorded (headers,
parsed body, role) in :attr:`LLMServer.requests`, and any request body containing one
of :attr:`LLMServer.forbidden` (case-insensitive) is recorded in
:attr:`LLMServer.violations`.

From the command line it serves until interrupted (Ctrl-C) and prints its base URL as
the first line of its output::

    python -m hagfish_jax.shell.advisors.scripted_server --port 8765
    hagfish hpo --advisor llm --llm-base-url http://127.0.0.1:8765/v1 --llm-model scripted

Without ``--script`` every role gets :data:`DEFAULT_SCRIPT`, a valid answer for the
reference search space (``optimizer``, ``learning_rate``, ``batch_size``,
``weight_decay``, ``label_smoothing``). ``--script FILE.json`` gives a JSON object
mapping each role to its steps: strings are contents, integers HTTP statuses.

In Python, use :class:`LLMServer` as a context manager:

>>> import json, urllib.request
>>> with LLMServer({"analyst": ['{"keywords": [], "analysis": "ok"}']}) as server:
...     request = urllib.request.Request(
...         server.base_url + "/chat/completions",
...         data=json.dumps({"model": "m", "messages": [
...             {"role": "system", "content": "ROLE: analyst"}]}).encode(),
...         headers={"Content-Type": "application/json"})
...     with urllib.request.urlopen(request) as reply:
...         answer = json.load(reply)["choices"][0]["message"]["content"]
>>> answer
'{"keywords": [], "analysis": "ok"}'
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEFAULT_SCRIPT", "LLMServer", "Sleep", "Status", "completion", "main"]

_ROLE_LINE = re.compile(r"^ROLE:\s*(\S+)\s*$", re.M)


@dataclass(frozen=True)
class Status:
    """An error answer: the status code, extra headers and an optional JSON body."""

    code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before answering (with the role's next or last content)."""

    seconds: float


Step = str | int | Status | Sleep


def completion(content: str, model: str) -> dict[str, Any]:
    """The body of a successful chat completion in the OpenAI shape.

    Args:
      content: the assistant's message text.
      model: the model name to report (the one the request asked for).

    Returns:
      A JSON-ready ``chat.completion`` object with one choice.
    """
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
    """The scripted server; use it as a context manager (it listens while inside).

    Args:
      script: steps per role (see the module docstring); a role without steps gets a
        JSON note saying so.
      forbidden: strings no request body may contain (recorded, not refused).
      unsupported: ``response_format`` types this server refuses with status 400
        (``"json_schema"``, ``"json_object"``), like a server that lacks them.
      port: the loopback port to listen on; 0 picks a free one.
    """

    def __init__(
        self,
        script: Mapping[str, Sequence[Step]] | None = None,
        forbidden: Sequence[str] = (),
        unsupported: Sequence[str] = (),
        *,
        port: int = 0,
    ):
        self.script: dict[str, list[Step]] = {k: list(v) for k, v in (script or {}).items()}
        self.forbidden: list[str] = list(forbidden)
        self.unsupported = set(unsupported)
        self.requested_port = int(port)
        self.requests: list[dict[str, Any]] = []
        self.violations: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._played: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The port the running server listens on."""
        assert self._httpd is not None, "the server is not running"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The API root to give a client, e.g. ``http://127.0.0.1:8765/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> LLMServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                owner._serve(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.requested_port), Handler)
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
        """How many requests came in (only ``role``'s when given)."""
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


# -- the command line ------------------------------------------------------------------

#: What the command line plays without ``--script``: one valid answer per role, for the
#: reference search space of ``hagfish hpo`` (each answer repeats forever).
DEFAULT_SCRIPT: dict[str, list[Step]] = {
    "analyst": [
        json.dumps(
            {
                "keywords": ["learning rate too high", "overfitting", "weight decay"],
                "analysis": "The validation loss turns up while the training loss keeps "
                "falling: the steps are large and the model starts to overfit.",
            }
        )
    ],
    "consultant_a": [
        json.dumps(
            {
                "hparams": {"learning_rate": 5e-4},
                "rationale": "Halve the learning rate (1e-3 to 5e-4) to calm the late rise.",
            }
        )
    ],
    "consultant_b": [
        json.dumps(
            {
                "hparams": {"weight_decay": 1e-3, "label_smoothing": 0.05},
                "rationale": "Regularise: ten times the weight decay, light label smoothing.",
            }
        )
    ],
    "supervisor": [
        json.dumps(
            {
                "hparams": {
                    "optimizer": "adam",
                    "learning_rate": 5e-4,
                    "batch_size": 64,
                    "weight_decay": 1e-3,
                    "label_smoothing": 0.05,
                },
                "rationale": "Take both: the smaller step and the extra regularisation.",
            }
        )
    ],
    "researcher": [
        json.dumps(
            {
                "remedies": [
                    {
                        "title": "Lower the learning rate",
                        "advice": "Halve the learning rate when the validation loss rises "
                        "while the training loss still falls.",
                    },
                    {
                        "title": "Regularise more",
                        "advice": "Raise the weight decay about tenfold and add label "
                        "smoothing around 0.05 against overfitting.",
                    },
                ]
            }
        )
    ],
}


def load_script(path: str) -> dict[str, list[Step]]:
    """Read a script file: a JSON object mapping each role to a list of steps.

    Args:
      path: the JSON file.

    Returns:
      ``{role: steps}``, with string steps as contents and integer steps as statuses.

    Raises:
      ValueError: the file is not such an object (another step type, a non-list).
    """
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object mapping roles to steps")
    script: dict[str, list[Step]] = {}
    for role, steps in raw.items():
        if not isinstance(steps, list) or not steps:
            raise ValueError(f"{path}: role {role!r} needs a non-empty list of steps")
        for step in steps:
            if isinstance(step, bool) or not isinstance(step, (str, int)):
                raise ValueError(
                    f"{path}: role {role!r} has the step {step!r}; a step is a string "
                    "(the content) or an integer (an HTTP status)"
                )
        script[str(role)] = list(steps)
    return script


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a script on the loopback interface until interrupted.

    The first line printed is the base URL (flushed at once), so a caller can read it
    to find a port picked with ``--port 0``.

    Args:
      argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
      The exit status: 0 after Ctrl-C or SIGTERM, 1 when the port cannot be used.
    """
    parser = argparse.ArgumentParser(
        prog="python -m hagfish_jax.shell.advisors.scripted_server",
        description="A loopback OpenAI-compatible server that plays scripted answers, "
        "for trying `hagfish hpo --advisor llm` offline.",
    )
    parser.add_argument(
        "--port", type=int, default=8765, help="loopback port (default 8765; 0: a free one)"
    )
    parser.add_argument(
        "--script", metavar="FILE.json", default=None,
        help="role -> list of steps (strings: contents, integers: HTTP statuses); "
        "default: a valid answer for every role",
    )
    args = parser.parse_args(argv)
    try:
        script = DEFAULT_SCRIPT if args.script is None else load_script(args.script)
    except (OSError, ValueError) as err:
        parser.error(str(err))

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):  # SIGINT too: a background job ignores it
        signal.signal(signum, stop)
    try:
        with LLMServer(script, port=args.port) as server:
            print(server.base_url, flush=True)
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    except OSError as err:  # the port is taken or not allowed
        print(f"cannot listen on 127.0.0.1:{args.port}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

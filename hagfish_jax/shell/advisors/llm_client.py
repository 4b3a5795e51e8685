"""Transport for the LLM advisors: endpoints, the chat client, answer parsing.

The roles that use it live in :mod:`hagfish_jax.shell.advisors.llm`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

#: The roles an endpoint can be configured for.
ROLES = ("consultant_a", "consultant_b", "supervisor", "analyst", "researcher")

_INSTALL = "pip install 'hagfish-jax[llm]'"
_ENV_BASE_URL = "HAGFISH_LLM_BASE_URL"
_ENV_MODEL = "HAGFISH_LLM_MODEL"
_ENV_KEY = "HAGFISH_LLM_API_KEY"
_NO_KEY = "unused"  # local servers accept any key; the client insists on one
_MAX_WAIT = 30.0  # seconds, for the backoff and for a server's Retry-After
_FORMATS = ("json_schema", "json_object", "none")

# -- endpoints -----------------------------------------------------------------------


def _safe_url(url: str) -> str:
    """``url`` with any ``user:password@`` part replaced by ``***@``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


@dataclass(frozen=True)
class Endpoint:
    """Where one role's requests go.

    Attributes:
      base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
      model: the model name the server knows.
      api_key: sent only in the ``Authorization`` header; left out of ``repr``/``str``.
      timeout: seconds per request.
      retries: how many times a failed request is retried (rate limit, server error,
        timeout, lost connection) before :class:`LLMError`.
      backoff: seconds before the first retry, doubled each time, at most 30.
    """

    base_url: str
    model: str
    api_key: str = field(default=_NO_KEY, repr=False)
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 1.0

    def __repr__(self) -> str:
        return (
            f"Endpoint(base_url={_safe_url(self.base_url)!r}, model={self.model!r}, "
            f"timeout={self.timeout!r}, retries={self.retries!r}, backoff={self.backoff!r})"
        )

    __str__ = __repr__


def endpoints(
    base_url: str | None = None,
    model: str | None = None,
    models: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    *,
    roles: Sequence[str] = ROLES,
) -> dict[str, Endpoint]:
    """Resolve an :class:`Endpoint` for each role.

    For each role: the base URL is ``base_url`` or ``HAGFISH_LLM_BASE_URL``; the model
    is ``models[role]``, else ``model``, else ``HAGFISH_LLM_MODEL_<ROLE>``, else
    ``HAGFISH_LLM_MODEL``; the key comes only from the environment:
    ``HAGFISH_LLM_API_KEY_<ROLE>``, else ``HAGFISH_LLM_API_KEY``, else a placeholder
    (local servers need none). ``<ROLE>`` is the role in capitals, e.g.
    ``HAGFISH_LLM_API_KEY_CONSULTANT_A``.

    Args:
      base_url: the API root shared by all roles.
      model: the model shared by the roles without one in ``models``.
      models: a model per role name (names from :data:`ROLES`).
      env: the environment to read (default: ``os.environ``).
      timeout: seconds per request.
      retries: retries per request.
      roles: the roles to resolve (default: all of :data:`ROLES`).

    Returns:
      ``{role: Endpoint}``.

    Raises:
      ValueError: an unknown role, or a role left without a base URL or a model.
    """
    env = os.environ if env is None else env
    models = dict(models or {})
    unknown = sorted(set(models) - set(ROLES)) + sorted(set(roles) - set(ROLES))
    if unknown:
        raise ValueError(f"unknown LLM role(s) {unknown}; the roles are {list(ROLES)}")

    def pick(*values: str | None) -> str | None:
        for value in values:
            if value is not None and str(value).strip():
                return str(value).strip()
        return None

    out: dict[str, Endpoint] = {}
    for role in roles:
        tag = role.upper()
        url = pick(base_url, env.get(_ENV_BASE_URL))
        if url is None:
            raise ValueError(
                f"LLM role {role!r} has no base URL: pass base_url= or set {_ENV_BASE_URL}"
            )
        name = pick(models.get(role), model, env.get(f"{_ENV_MODEL}_{tag}"), env.get(_ENV_MODEL))
        if name is None:
            raise ValueError(
                f"LLM role {role!r} has no model: pass model= or models={{{role!r}: ...}}, "
                f"or set {_ENV_MODEL}_{tag} or {_ENV_MODEL}"
            )
        key = pick(env.get(f"{_ENV_KEY}_{tag}"), env.get(_ENV_KEY)) or _NO_KEY
        out[role] = Endpoint(url, name, key, timeout=float(timeout), retries=int(retries))
    return out


# -- errors and redaction --------------------------------------------------------------


class LLMError(Exception):
    """A model call failed for good (or answered something unusable)."""


def _secrets(endpoint: Endpoint) -> list[str]:
    """The strings that must never appear in a message or a transcript."""
    found = []
    if endpoint.api_key and endpoint.api_key != _NO_KEY:
        found.append(endpoint.api_key)
    try:
        userinfo = urlsplit(endpoint.base_url).netloc.rpartition("@")[0]
    except ValueError:
        userinfo = ""
    if userinfo:
        found.append(userinfo)
        found.extend(part for part in userinfo.split(":") if len(part) >= 4)
    return sorted(set(found), key=len, reverse=True)


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# -- parsing answers -------------------------------------------------------------------

_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)


def _loads(text: str) -> tuple[bool, Any]:
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def _balanced_objects(text: str, limit: int = 64):
    """Yield the balanced ``{...}`` spans of ``text``, from the leftmost start on."""
    starts = [i for i, c in enumerate(text) if c == "{"][:limit]
    for start in starts:
        depth, in_string, escaped = 0, False, False
        for i in range(start, len(text)):
            c = text[i]
            if in_string:
                if escaped:
                    escaped = False
                elif c == "\\":
                    escaped = True
                elif c == '"':
                    in_string = False
            elif c == '"':
                in_string = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    yield text[start : i + 1]
                    break


def parse_json(text: str) -> Any:
    """The JSON value in a model's answer: the whole text, a fenced block, or the
    first balanced ``{...}`` that parses. Pure parsing; nothing is evaluated.

    >>> parse_json('Sure! {"a": 1} Hope that helps.')
    {'a': 1}

    Raises:
      LLMError: no JSON found.
    """
    stripped = text.strip()
    ok, value = _loads(stripped)
    if ok:
        return value
    for block in _FENCE.findall(stripped):
        ok, value = _loads(block.strip())
        if ok:
            return value
    for candidate in _balanced_objects(stripped):
        ok, value = _loads(candidate)
        if ok:
            return value
    raise LLMError(f"the answer is not JSON: {stripped[:200]!r}")


# -- the chat client -------------------------------------------------------------------


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(f"the LLM advisors need the 'openai' client package: {_INSTALL}") from err
    return openai


def _retry_after(error: Any) -> float | None:
    """A server's ``Retry-After`` in seconds (capped), if it sent a usable one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    raw = headers.get("retry-after")
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_WAIT)


class Chat:
    """One endpoint's chat client: JSON questions in, JSON objects out.

    Args:
      endpoint: where to send the requests.
      transcript: called with one dict per attempt (prompts, answer or error, status,
        answer format); it never holds the key or the URL's credentials.
      sleep: how to wait between retries (tests pass a no-op).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        transcript: Callable[[dict], None] | None = None,
        sleep: Callable[[float], Any] = time.sleep,
    ):
        openai = _import_openai()
        self.endpoint = endpoint
        self._transcript = transcript
        self._sleep = sleep
        self._secrets = _secrets(endpoint)
        self._errors = openai
        self._client = openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key or _NO_KEY,
            timeout=endpoint.timeout,
            max_retries=0,
        )

    def __repr__(self) -> str:
        return f"Chat({self.endpoint!r})"

    def _record(self, entry: dict[str, Any]) -> None:
        if self._transcript is None:
            return
        clean = {
            k: _redact(v, self._secrets) if isinstance(v, str) else v for k, v in entry.items()
        }
        self._transcript(clean)

    def _fail(self, role: str, message: str) -> LLMError:
        return LLMError(_redact(f"{role}: {message}", self._secrets))

    def ask(self, role: str, system: str, user: str, schema: dict) -> dict:
        """Send one question and return the answer's JSON object.

        Args:
          role: the asking role (for the transcript, the errors and the schema name).
          system: the system message (already sanitized by the caller).
          user: the user message (already sanitized by the caller).
          schema: the JSON schema the answer should follow (a hint: not enforced here).

        Returns:
          The parsed JSON object, as plain data.

        Raises:
          LLMError: the call failed after its retries, or the answer is not a JSON object.
        """
        errors = self._errors
        endpoint = self.endpoint
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        name = re.sub(r"[^A-Za-z0-9_-]", "_", f"hagfish_{role}")[:64]
        formats = {
            "json_schema": {
                "type": "json_schema",
                "json_schema": {"name": name, "schema": schema, "strict": False},
            },
            "json_object": {"type": "json_object"},
            "none": None,
        }
        fmt_index, failures, attempt = 0, 0, 0
        while True:
            attempt += 1
            fmt = _FORMATS[fmt_index]
            entry: dict[str, Any] = {
                "role": role,
                "model": endpoint.model,
                "attempt": attempt,
                "system": system,
                "user": user,
                "response": None,
                "error": None,
                "status": None,
                "format": fmt,
            }
            extra = {} if formats[fmt] is None else {"response_format": formats[fmt]}
            wait: float | None = None
            try:
                reply = self._client.chat.completions.create(
                    model=endpoint.model, messages=messages, **extra
                )
            except errors.APIStatusError as err:
                status = int(err.status_code)
                entry.update(status=status, error=f"status {status}: {err.message}")
                self._record(entry)
                if status in (400, 422) and fmt_index + 1 < len(_FORMATS):
                    fmt_index += 1  # maybe the answer format: ask again with a plainer one
                    continue
                if status != 429 and status < 500:
                    raise self._fail(role, f"the server answered {status}: {err.message}") from None
                wait = _retry_after(err)
                problem = f"the server answered {status}: {err.message}"
            except errors.APIConnectionError as err:  # includes timeouts
                kind = "timed out" if isinstance(err, errors.APITimeoutError) else "no connection"
                entry.update(error=f"{kind}: {err}")
                self._record(entry)
                problem = (
                    f"the request to {endpoint.base_url} timed out ({err})"
                    if kind == "timed out"
                    else f"no connection to {endpoint.base_url} ({err})"
                )
            else:
                return self._answer(role, reply, entry)
            if failures >= endpoint.retries:
                raise self._fail(role, f"gave up after {attempt} attempt(s); {problem}")
            if wait is None:
                wait = min(endpoint.backoff * 2.0**failures, _MAX_WAIT)
            failures += 1
            self._sleep(wait)

    def _answer(self, role: str, reply: Any, entry: dict[str, Any]) -> dict:
        """Parse a successful reply into a dict (and record the attempt)."""
        try:
            content = reply.choices[0].message.content
        except (AttributeError, IndexError, TypeError):
            content = None
        if not isinstance(content, str) or not content.strip():
            entry.update(error="the answer has no text")
            self._record(entry)
            raise self._fail(role, "the model's answer has no text")
        entry.update(response=content)
        try:
            value = parse_json(content)
        except LLMError as err:
            entry.update(error=str(err))
            self._record(entry)
            raise self._fail(role, str(err)) from None
        if not isinstance(value, dict):
            entry.update(error="the answer is not a JSON object")
            self._record(entry)
            raise self._fail(role, f"the answer is JSON but not an object: {type(value).__name__}")
        self._record(entry)
        return value

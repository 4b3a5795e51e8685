"""Council roles played by a language model behind an OpenAI-compatible endpoint.

Any server that speaks the chat-completions protocol works: OpenAI, Gemini's
OpenAI-compatible endpoint, vLLM, Ollama, a llama.cpp server. Each role has an
:class:`Endpoint` of its own (base URL, model, key), usually resolved by
:func:`endpoints` from arguments and ``HAGFISH_LLM_*`` environment variables; the key
is only ever read from the environment.

What is sent and what comes back:

* every prompt describes the role, the search space (names, types, bounds, choices),
  the values in force, recent curves, diagnosis, research notes and earlier trials, and
  asks for JSON only; the dataset and the model stay anonymous, and every text goes
  through the caller's sanitizer before it leaves;
* the researcher (:class:`LLMResearcher`, optional) runs a search hook first (the
  shipped knowledge base by default) and has the model condense the hits into a few
  concrete remedies, keeping the hits when the model offers none;
* the answer is parsed as JSON data and nothing else: it is never evaluated or run,
  and the values it proposes are checked against the space by the caller
  (:func:`~hagfish_jax.shell.advisors.validate.validate`), not here;
* failures (rate limits, server errors, timeouts, lost connections) are retried with
  a doubling backoff; an answer format the server refuses is downgraded
  (``json_schema`` -> ``json_object`` -> plain prompt). A call that fails for good
  raises :class:`LLMError`, whose message never shows the API key.

The ``openai`` client is an optional dependency: ``pip install 'hagfish-jax[llm]'``.

>>> eps = endpoints(base_url="http://127.0.0.1:8080/v1", model="local", env={})
>>> sorted(eps) == sorted(ROLES)
True
>>> eps["supervisor"]
Endpoint(base_url='http://127.0.0.1:8080/v1', model='local', timeout=60.0, retries=3, backoff=1.0)
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ...core.dimensions import Choice, IntUniform, LogUniform, Uniform
from .context import HISTORY_KEYS, Advice, AdviceContext, Analysis, Result
from .research import SearchResearcher, offline_search

__all__ = [
    "ROLES",
    "Chat",
    "Endpoint",
    "LLMAnalyst",
    "LLMConsultant",
    "LLMError",
    "LLMResearcher",
    "LLMSupervisor",
    "endpoints",
    "llm_roles",
    "parse_json",
]

#: The roles an endpoint can be configured for.
ROLES = ("consultant_a", "consultant_b", "supervisor", "analyst", "researcher")

_INSTALL = "pip install 'hagfish-jax[llm]'"
_ENV_BASE_URL = "HAGFISH_LLM_BASE_URL"
_ENV_MODEL = "HAGFISH_LLM_MODEL"
_ENV_KEY = "HAGFISH_LLM_API_KEY"
_NO_KEY = "unused"  # local servers accept any key; the client insists on one
_MAX_WAIT = 30.0  # seconds, for the backoff and for a server's Retry-After
_FORMATS = ("json_schema", "json_object", "none")
_HISTORY_COLUMNS = tuple(k for k in HISTORY_KEYS if k != "cost")  # what a prompt shows
_MAX_ROWS = 20
_MAX_TRIALS = 20
_MAX_NOTES = 8
_MAX_KEYWORDS = 8
_KEYWORD_CHARS = 60
_REMEDY_CHARS = 400
_RESEARCH_PREFIX = "llm researcher: "


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
        raise ImportError(
            f"the LLM advisors need the 'openai' client package: {_INSTALL}"
        ) from err
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
                problem = f"the request {kind}: {err}"
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


# -- prompts ---------------------------------------------------------------------------


class _Cleaner(Protocol):
    def clean(self, text: str) -> str: ...


class _Identity:
    """The default sanitizer: sends texts unchanged."""

    def clean(self, text: str) -> str:
        return text


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return str(value)
    try:
        number = float(value)  # numpy scalars, 0-d arrays
    except (TypeError, ValueError):
        return str(value)
    return f"{number:.4g}"


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of ``value`` (numpy scalars to numbers, others to text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    try:
        return value.item()
    except (AttributeError, ValueError):
        return str(value)


def _dumps(value: Any) -> str:
    return json.dumps(_plain(value), sort_keys=True, default=str)


def _space_lines(context: AdviceContext) -> list[str]:
    space = context.space
    if space is None:
        return ["(no search space given: change only the names in force, keep numbers finite)"]
    lines = []
    for name, dim in space.dims.items():
        if isinstance(dim, Choice):
            lines.append(f"- {name}: one of {_dumps(list(dim.values))}")
        elif isinstance(dim, IntUniform):
            lines.append(f"- {name}: integer in [{int(dim.low)}, {int(dim.high)}]")
        elif isinstance(dim, LogUniform):
            lines.append(f"- {name}: float in [{dim.low:g}, {dim.high:g}], log scale")
        elif isinstance(dim, Uniform):
            lines.append(f"- {name}: float in [{dim.low:g}, {dim.high:g}]")
        else:  # pragma: no cover - a dimension kind added later
            lines.append(f"- {name}: {dim!r}")
    return lines


def _history_lines(context: AdviceContext) -> list[str]:
    rows = list(context.history)[-_MAX_ROWS:]
    columns = [c for c in _HISTORY_COLUMNS if any(c in row for row in rows)]
    if not rows or not columns:
        return ["(none yet)"]
    lines = [" | ".join(columns)]
    for row in rows:
        lines.append(" | ".join(_fmt(row[c]) if c in row else "-" for c in columns))
    return lines


def _context_sections(context: AdviceContext) -> list[str]:
    """The user-message sections every role shares."""
    parts = ["VALUES IN FORCE:", _dumps(context.hparams), ""]
    shown = len(list(context.history)[-_MAX_ROWS:])
    parts += [f"RECENT HISTORY (last {shown} rows, oldest first):", *_history_lines(context), ""]
    parts += ["DIAGNOSIS FLAGS: " + (", ".join(context.flags) if context.flags else "(none)")]
    features = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(context.features.items()))
    parts += ["CURVE FEATURES: " + (features or "(none)"), ""]
    parts += ["RESEARCH NOTES:"]
    notes = list(context.notes)[:_MAX_NOTES]
    parts += [f"- {n.title}: {n.snippet[:400]}" for n in notes] or ["(none)"]
    parts += ["", "EARLIER TRIALS (oldest first):"]
    trials = list(context.trials)[-_MAX_TRIALS:]
    lines = [
        f"- {_dumps(t.get('hparams', {}))} -> val_accuracy={_fmt(t.get('val_accuracy'))}"
        for t in trials
    ]
    parts += lines or ["(none)"]
    budget = "unknown" if context.budget_left is None else str(context.budget_left)
    parts += ["", f"ROUND: {context.round}; BUDGET LEFT: {budget}"]
    return parts


def _proposal_text(advice: Advice) -> str:
    text = f"hparams={_dumps(advice.hparams)}; rationale={advice.rationale[:600]!r}"
    if advice.flags:
        text += f"; from={'/'.join(advice.flags)}"
    return text


_ANONYMOUS = (
    "The dataset and the model are anonymous on purpose. Do not ask about them and do "
    "not guess what they are; reason only from the numbers given."
)
_JSON_ONLY = "Answer with JSON only: one JSON object, no prose and no code around it."


def _system(role: str, duty: str, context: AdviceContext, shape: str) -> str:
    lines = [
        f"ROLE: {role}",
        duty,
        _ANONYMOUS,
        "",
        "SEARCH SPACE (use only these names; keep each value within its bounds or "
        "among its choices):",
        *_space_lines(context),
        "",
        f"{_JSON_ONLY} Shape: {shape}",
    ]
    return "\n".join(lines)


_ADVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "hparams": {"type": "object"},
        "rationale": {"type": "string"},
    },
    "required": ["hparams", "rationale"],
}
_ANALYSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "keywords": {"type": "array", "items": {"type": "string"}},
        "analysis": {"type": "string"},
    },
    "required": ["keywords", "analysis"],
}
_ADVICE_SHAPE = '{"hparams": {"<name>": <value>, ...}, "rationale": "<why, briefly>"}'
_ANALYSIS_SHAPE = '{"keywords": ["<short search phrase>", ...], "analysis": "<your reading>"}'


class _Role:
    """What the LLM roles share: the chat, the sanitizer and one guarded round trip."""

    def __init__(self, chat: Chat, sanitizer: _Cleaner | None = None):
        self.chat = chat
        self.sanitizer = sanitizer if sanitizer is not None else _Identity()

    def _ask(self, role: str, system: str, user: str, schema: dict) -> dict:
        clean = self.sanitizer.clean
        return self.chat.ask(role, clean(system), clean(user + "\n\n" + _JSON_ONLY), schema)


def _advice(role: str, answer: Mapping[str, Any]) -> Advice:
    """An :class:`Advice` from an answer; the values stay raw (the caller validates)."""
    hparams = answer.get("hparams")
    if not isinstance(hparams, Mapping):
        raise LLMError(f"{role}: the answer has no 'hparams' object")
    rationale = answer.get("rationale", "")
    if not isinstance(rationale, str):
        rationale = "" if rationale is None else json.dumps(rationale, default=str)
    return Advice(hparams=dict(hparams), rationale=rationale, flags=("llm", role))


class LLMConsultant(_Role):
    """A :class:`~hagfish_jax.shell.advisors.context.Consultant` played by a model.

    Args:
      chat: the role's client.
      name: the role name (``"consultant_a"`` or ``"consultant_b"``), sent as the
        ``ROLE:`` line and used in the advice's flags.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent.
    """

    def __init__(self, chat: Chat, name: str = "consultant_a", sanitizer: _Cleaner | None = None):
        super().__init__(chat, sanitizer)
        self.name = name

    def propose(self, context: AdviceContext, other: Advice | None) -> Advice:
        """Propose new values; ``other`` is the other consultant's last proposal."""
        system = _system(
            self.name,
            "You are one of two hyperparameter consultants for a neural-network training "
            "run. Read the curves and propose the values for the next step. A supervisor "
            "compares your proposal with the other consultant's.",
            context,
            _ADVICE_SHAPE,
        )
        theirs = "(none yet)" if other is None else _proposal_text(other)
        user = "\n".join([*_context_sections(context), "", "OTHER CONSULTANT'S LAST PROPOSAL:",
                          theirs])
        return _advice(self.name, self._ask(self.name, system, user, _ADVICE_SCHEMA))


class LLMSupervisor(_Role):
    """A :class:`~hagfish_jax.shell.advisors.context.Supervisor` played by a model.

    Args:
      chat: the role's client.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent.
    """

    name = "supervisor"

    def decide(self, context: AdviceContext, proposals: Sequence[Advice]) -> Advice:
        """Merge the proposals into the final configuration."""
        system = _system(
            self.name,
            "You are the supervisor of two hyperparameter consultants for a neural-network "
            "training run. Weigh their proposals against the evidence and give the final "
            "values for the next step (take one, merge them, or keep the values in force).",
            context,
            _ADVICE_SHAPE,
        )
        listed = [f"{i + 1}. {_proposal_text(p)}" for i, p in enumerate(proposals)]
        user = "\n".join([*_context_sections(context), "", "PROPOSALS:", *(listed or ["(none)"])])
        return _advice(self.name, self._ask(self.name, system, user, _ADVICE_SCHEMA))


class LLMAnalyst(_Role):
    """An :class:`~hagfish_jax.shell.advisors.context.Analyst` played by a model.

    Args:
      chat: the role's client.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent.
    """

    name = "analyst"

    def analyse(self, context: AdviceContext) -> Analysis:
        """Read the curves; return up to 8 short search keywords and the reading."""
        system = _system(
            self.name,
            "You are the analyst of a neural-network training run. Read the curves and "
            "the diagnosis, say what is going on, and name up to "
            f"{_MAX_KEYWORDS} short, generic search phrases for finding remedies (about "
            "training behaviour, never about the data or the model's identity).",
            context,
            _ANALYSIS_SHAPE,
        )
        user = "\n".join(_context_sections(context))
        answer = self._ask(self.name, system, user, _ANALYSIS_SCHEMA)
        raw = answer.get("keywords")
        keywords: list[str] = []
        for word in raw if isinstance(raw, list) else []:
            if isinstance(word, str) and word.strip() and len(keywords) < _MAX_KEYWORDS:
                keywords.append(" ".join(word.split())[:_KEYWORD_CHARS])
        text = answer.get("analysis", "")
        if not isinstance(text, str):
            text = "" if text is None else json.dumps(text, default=str)
        return Analysis(keywords=tuple(keywords), text=text)


class LLMResearcher(_Role):
    """A :class:`~hagfish_jax.shell.advisors.context.Researcher` helped by a model.

    The search hook runs first, exactly as in
    :class:`~hagfish_jax.shell.advisors.research.SearchResearcher` (same coercion,
    deduplication and ``k``). The model then reads the keywords, the diagnosis (flags
    and curve features), the values in force and those hits, and condenses them into at
    most ``k`` short, concrete remedies for the next configuration. Each remedy becomes
    a :class:`~hagfish_jax.shell.advisors.context.Result` whose source names the model
    and the hits it drew on: ``"llm researcher: <model> from <source>; <source>"``
    (just ``"llm researcher: <model>"`` when the search found nothing).

    Args:
      chat: the role's client.
      search: query text to hits, as for ``SearchResearcher``; ``None`` searches
        nothing, and the model works from the diagnosis alone.
      k: the most search hits kept and the most remedies returned.
      sanitizer: anything with ``clean(text) -> str``, applied to every text sent
        (the search hits included).

    Raises:
      ValueError: ``k`` is negative.
    """

    name = "researcher"

    def __init__(
        self,
        chat: Chat,
        search: Callable[[str], Sequence[Any]] | None = offline_search,
        k: int = 3,
        sanitizer: _Cleaner | None = None,
    ) -> None:
        super().__init__(chat, sanitizer)
        self.searcher = SearchResearcher(search, k)
        self.k = self.searcher.k

    def research(
        self, keywords: Sequence[str], context: AdviceContext | None = None
    ) -> tuple[Result, ...]:
        """Search, then ask the model to turn the hits into remedies.

        Args:
          keywords: the analyst's keywords.
          context: the advice context (space, values in force, diagnosis); ``None``
            is read as an empty one.

        Returns:
          Up to ``k`` remedies as results (title, advice, source); the search hits
          unchanged when the model gives no usable remedy; ``()`` when ``k`` is 0.

        Raises:
          LLMError: the model call failed (the council then records a fallback).
          Exception: whatever the search hook raises, unchanged.
        """
        hits = self.searcher.research(keywords, context)
        if self.k == 0:
            return hits
        if context is None:
            context = AdviceContext(space=None, hparams={})
        system = _system(
            self.name,
            "You are the researcher for a neural-network training run. From the analyst's "
            "keywords, the diagnosis, the values in force and the search results below, "
            f"write at most {self.k} short, concrete remedies for the next configuration "
            "(which values to change, in which direction and roughly by how much). Rely "
            "on the search results where they apply; say nothing about the data or the "
            "model's identity.",
            context,
            _REMEDIES_SHAPE,
        )
        words = [" ".join(w.split())[:_KEYWORD_CHARS] for w in keywords if isinstance(w, str)]
        features = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(context.features.items()))
        found = [f"- {h.title}: {h.snippet[:_REMEDY_CHARS]} (source: {h.source})" for h in hits]
        user = "\n".join(
            [
                "KEYWORDS: " + (", ".join(w for w in words if w) or "(none)"),
                "DIAGNOSIS FLAGS: " + (", ".join(context.flags) if context.flags else "(none)"),
                "CURVE FEATURES: " + (features or "(none)"),
                "",
                "VALUES IN FORCE:",
                _dumps(context.hparams),
                "",
                "SEARCH RESULTS:",
                *(found or ["(none)"]),
                "",
                f"Give at most {self.k} remedies.",
            ]
        )
        answer = self._ask(self.name, system, user, _REMEDIES_SCHEMA)
        source = _RESEARCH_PREFIX + self.chat.endpoint.model
        if hits:
            source += " from " + "; ".join(h.source for h in hits)
        remedies = _remedies(answer.get("remedies"), self.k)
        if not remedies:
            return hits
        return tuple(Result(title, advice, source) for title, advice in remedies)


_REMEDIES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "remedies": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "advice": {"type": "string"}},
                "required": ["title", "advice"],
            },
        },
    },
    "required": ["remedies"],
}
_REMEDIES_SHAPE = '{"remedies": [{"title": "<a few words>", "advice": "<what to change>"}, ...]}'


def _remedies(raw: Any, k: int) -> list[tuple[str, str]]:
    """The well-formed ``(title, advice)`` pairs of an answer, at most ``k``, each cut.

    An item counts only as a mapping with a non-blank string ``title`` and ``advice``;
    anything else is skipped.

    >>> _remedies([{"title": "Lower lr", "advice": "halve it"}, {"title": 3}, "x"], 3)
    [('Lower lr', 'halve it')]
    """
    out: list[tuple[str, str]] = []
    for item in raw if isinstance(raw, list) else []:
        if len(out) == k:
            break
        if not isinstance(item, Mapping):
            continue
        title, advice = item.get("title"), item.get("advice")
        if not (isinstance(title, str) and isinstance(advice, str)):
            continue
        if title.strip() and advice.strip():
            out.append((title.strip()[:_REMEDY_CHARS], advice.strip()[:_REMEDY_CHARS]))
    return out


def llm_roles(
    endpoints: Mapping[str, Endpoint],
    transcript: Callable[[dict], None] | None = None,
    sanitizer: _Cleaner | None = None,
    sleep: Callable[[float], Any] = time.sleep,
    search: Callable[[str], Sequence[Any]] | None = offline_search,
) -> dict[str, object]:
    """The council's model-played roles, one :class:`Chat` (endpoint, key) each.

    Args:
      endpoints: an :class:`Endpoint` per role (see :func:`endpoints`); the
        ``consultant_a``, ``consultant_b``, ``supervisor`` and ``analyst`` entries are
        required, ``researcher`` is optional.
      transcript: receives every attempt of every role.
      sanitizer: applied to every text sent.
      sleep: how the clients wait between retries.
      search: the researcher's search hook (see :class:`LLMResearcher`); used only
        when ``endpoints`` has a ``researcher``.

    Returns:
      ``{"consultant_a": ..., "consultant_b": ..., "supervisor": ..., "analyst": ...}``,
      plus ``"researcher"`` (an :class:`LLMResearcher`) when it has an endpoint.

    Raises:
      ValueError: a required role has no endpoint.
    """
    needed = ("consultant_a", "consultant_b", "supervisor", "analyst")
    missing = [r for r in needed if r not in endpoints]
    if missing:
        raise ValueError(f"no LLM endpoint for role(s) {missing}")

    def chat(role: str) -> Chat:
        return Chat(endpoints[role], transcript=transcript, sleep=sleep)

    roles: dict[str, object] = {
        "consultant_a": LLMConsultant(chat("consultant_a"), "consultant_a", sanitizer),
        "consultant_b": LLMConsultant(chat("consultant_b"), "consultant_b", sanitizer),
        "supervisor": LLMSupervisor(chat("supervisor"), sanitizer),
        "analyst": LLMAnalyst(chat("analyst"), sanitizer),
    }
    if "researcher" in endpoints:
        roles["researcher"] = LLMResearcher(chat("researcher"), search, sanitizer=sanitizer)
    return roles

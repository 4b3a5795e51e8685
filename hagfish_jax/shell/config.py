"""Config-driven tuning: a dict or a YAML file describes the space, tuner, guard and schedule.

```yaml
space:
  learning_rate: [1e-4, 1e-1]             # a range; log-scaled (spans >= 2 decades)
  weight_decay: {low: 1e-6, high: 1e-2, log: true}
  b1: {low: 0.8, high: 0.99}              # a linear range
  dropout_rate: [0.0, 0.5]                # linear (starts at 0)
  batch_size: {choice: [32, 64, 128]}     # choices are always written out
  layers: {low: 1, high: 4, int: true}
tuner:
  strategy: bayes                         # fixed, plateau, finite_difference, spsa, bayes, pbt, pb2
  candidates: 128                         # any option of that factory
guard:                                    # single-run strategies only; `guard: false` disables
  max_delta: 0.5
  smoothing: 3
  tolerance: 0.2
  patience: 2
  cooldown: 3
  shrink: {learning_rate: 0.1}            # on divergence (the default)
schedule:
  tune_every: 2
  warmup: 2
```

A two-number list is a range: logarithmic when both ends are positive and span at
least two decades, linear otherwise; write the mapping form to choose explicitly.
Numbers in scientific notation (``1e-4``) are numbers. Every option takes effect;
anything unknown or out of range raises ``ValueError`` naming the key.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from ..core.base import Tuner
from ..core.guard import guard as guard_factory
from ..core.space import Choice, Dimension, IntUniform, LogUniform, Space, Uniform
from ..core.tuners import bayes, finite_difference, fixed, pb2, pbt, plateau, spsa

__all__ = ["STRATEGIES", "TuningConfig", "from_config", "load_yaml"]

#: strategy name -> (factory, takes a space, works on a population)
STRATEGIES: dict[str, tuple[Any, bool, bool]] = {
    "fixed": (fixed, False, False),
    "plateau": (plateau, False, False),
    "finite_difference": (finite_difference, True, False),
    "spsa": (spsa, True, False),
    "bayes": (bayes, True, False),
    "pbt": (pbt, True, True),
    "pb2": (pb2, True, True),
}
_SECTIONS = ("space", "tuner", "guard", "schedule")
_GUARD_KEYS = (
    "warmup",
    "max_delta",
    "smoothing",
    "tolerance",
    "patience",
    "cooldown",
    "tune_every",
    "shrink",
)
_SCHEDULE_KEYS = ("tune_every", "warmup")
_RANGE_KEYS = {"low", "high", "log", "int", "dynamic"}


@dataclasses.dataclass(frozen=True)
class TuningConfig:
    """A validated tuning set-up. ``build()`` returns the tuner it describes.

    Attributes:
      space: the search space.
      strategy: the tuner factory's name.
      options: keyword arguments for the factory.
      guard: keyword arguments for :func:`hagfish_jax.guard` (``None``: unguarded).
    """

    space: Space
    strategy: str
    options: tuple[tuple[str, Any], ...]
    guard: tuple[tuple[str, Any], ...] | None

    def build(self) -> Tuner:
        factory, takes_space, _ = STRATEGIES[self.strategy]
        options = dict(self.options)
        tuner = factory(self.space, **options) if takes_space else factory(**options)
        if self.guard is None:
            return tuner
        guard = dict(self.guard)
        if "shrink" in guard:
            guard["shrink"] = dict(guard["shrink"])
        return guard_factory(tuner, space=self.space, **guard)

    @property
    def population(self) -> bool:
        """Whether the strategy works across a population axis (pbt, pb2)."""
        return STRATEGIES[self.strategy][2]


# -- YAML -----------------------------------------------------------------------------------

_FLOAT = re.compile(
    r"""^[-+]?(?:
        [0-9][0-9_]*(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)?   # 1, 1.5, 1e-4, 1.5e3
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?                  # .5, .5e-3
        |\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""",
    re.X,
)


def load_yaml(path: str | os.PathLike) -> Any:
    """Read a YAML file, taking ``1e-4`` (no dot) as a number as people expect."""
    try:
        import yaml
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("reading YAML needs PyYAML: pip install 'hagfish-jax[config]'") from err

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
        for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
    with open(path) as f:
        return yaml.load(f, Loader=Loader)


# -- parsing --------------------------------------------------------------------------------


def _reject_unknown(where: str, keys, accepted) -> None:
    unknown = set(keys) - set(accepted)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; accepted: {list(accepted)}")


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, (int, float)):
        raise ValueError(f"{key}: expected a number, got {value!r}")
    return value


def _dimension(name: str, spec: Any) -> Dimension:
    try:
        return _build_dimension(f"space.{name}", spec)
    except ValueError as err:
        msg = str(err)
        if not msg.startswith(f"space.{name}"):  # a dimension's own check: name the key
            msg = f"space.{name}: {msg}"
        raise ValueError(msg) from None


def _flag(key: str, spec: Mapping[str, Any], name: str, default: bool) -> bool:
    """``spec[name]``, a true or false (a text or a number is refused: "false" is no
    false), or ``default`` when absent."""
    value = spec.get(name, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key}.{name}: expected true or false, got {value!r}")
    return value


def _build_dimension(key: str, spec: Any) -> Dimension:
    if isinstance(spec, (list, tuple)):
        if len(spec) != 2:
            raise ValueError(
                f"{key}: a list must be a range [low, high] (two numbers); write choices "
                f"as {{choice: [...]}}, got {spec!r}"
            )
        low, high = (_number(key, v) for v in spec)
        log = low > 0 and high > 0 and high / low >= 100.0
        return LogUniform(low, high) if log else Uniform(low, high)
    if isinstance(spec, Mapping):
        if "choice" in spec:
            extra = set(spec) - {"choice", "dynamic"}
            if extra:
                raise ValueError(f"{key}: unknown key(s) {sorted(extra)} beside 'choice'")
            values = spec["choice"]
            if not isinstance(values, (list, tuple)):
                raise ValueError(f"{key}.choice: expected a list, got {values!r}")
            return Choice(values, dynamic=_flag(key, spec, "dynamic", False))
        unknown = set(spec) - _RANGE_KEYS
        if unknown:
            raise ValueError(
                f"{key}: unknown key(s) {sorted(unknown)}; accepted: low, high, log, int, "
                "dynamic, or choice"
            )
        if "low" not in spec or "high" not in spec:
            raise ValueError(f"{key}: a range needs both 'low' and 'high', got {dict(spec)!r}")
        low, high = _number(f"{key}.low", spec["low"]), _number(f"{key}.high", spec["high"])
        log = _flag(key, spec, "log", False)
        if _flag(key, spec, "int", False):
            if log:
                raise ValueError(f"{key}: 'int' and 'log' cannot be combined")
            return IntUniform(low, high, dynamic=_flag(key, spec, "dynamic", False))
        cls = LogUniform if log else Uniform
        return cls(low, high, dynamic=_flag(key, spec, "dynamic", True))
    raise ValueError(
        f"{key}: expected [low, high], {{low, high, log}} or {{choice: [...]}}, got {spec!r}"
    )


#: The largest integer option accepted (buffers and candidate sets are allocated with it).
_INT_LIMIT = 2**24


def _int_option(key: str, value: Any, minimum: int) -> int:
    value = _number(key, value)
    ok = math.isfinite(value) and value == int(value) and minimum <= value <= _INT_LIMIT
    if not ok:
        raise ValueError(
            f"{key}: must be an integer from {minimum} to {_INT_LIMIT}, got {value!r}"
        )
    return int(value)


def _guard_options(section: Any, schedule: Mapping[str, Any]) -> dict[str, Any]:
    if section is None:
        section = {}
    if not isinstance(section, Mapping):
        raise ValueError(f"guard: expected a mapping or false, got {section!r}")
    _reject_unknown("guard", section, _GUARD_KEYS)
    opts = dict(section)
    for k, v in schedule.items():
        if k in opts and opts[k] != v:
            raise ValueError(f"schedule.{k} ({v!r}) contradicts guard.{k} ({opts[k]!r})")
        opts[k] = v
    out: dict[str, Any] = {}
    for k, v in opts.items():
        where = f"schedule.{k}" if k in schedule else f"guard.{k}"
        if k in ("warmup", "cooldown"):
            out[k] = _int_option(where, v, 0)
        elif k in ("smoothing", "patience", "tune_every"):
            out[k] = _int_option(where, v, 1)
        elif k == "max_delta":
            v = _number(where, v)
            if not 0.0 < v <= 1.0 or math.isnan(v):
                raise ValueError(f"{where}: must be in (0, 1], got {v!r}")
            out[k] = float(v)
        elif k == "tolerance":
            v = _number(where, v)
            if not v >= 0.0:
                raise ValueError(f"{where}: must be >= 0, got {v!r}")
            out[k] = float(v)
        elif k == "shrink":
            if not isinstance(v, Mapping):
                raise ValueError(f"{where}: expected a mapping name -> factor, got {v!r}")
            factors = {}
            for name, factor in v.items():
                factor = _number(f"{where}.{name}", factor)
                if not 0.0 < factor < 1.0:
                    raise ValueError(f"{where}.{name}: must be in (0, 1), got {factor!r}")
                factors[str(name)] = float(factor)
            out[k] = tuple(sorted(factors.items()))  # hashable, like the other options
    return out


def _tuner_options(section: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if "strategy" not in section:
        raise ValueError(f"tuner.strategy: missing; accepted: {sorted(STRATEGIES)}")
    strategy = section["strategy"]
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise ValueError(
            f"tuner.strategy: unknown strategy {strategy!r}; accepted: {sorted(STRATEGIES)}"
        )
    options = section.get("options") or {}
    if not isinstance(options, Mapping):
        raise ValueError(f"tuner.options: expected a mapping of option -> value, got {options!r}")
    options = dict(options)
    for k, v in section.items():
        if k not in ("strategy", "options"):
            if k in options:
                raise ValueError(f"tuner.{k}: given both inline and under tuner.options")
            options[k] = v
    factory, takes_space, _ = STRATEGIES[strategy]
    params = inspect.signature(factory).parameters
    accepted = [p for p in params if p != "space"]
    for k, v in options.items():
        if k not in accepted:
            raise ValueError(f"tuner.{k}: not an option of {strategy}; accepted: {accepted}")
        default = params[k].default
        if isinstance(default, bool):
            if not isinstance(v, bool):
                raise ValueError(f"tuner.{k}: expected true or false, got {v!r}")
        elif isinstance(default, int):
            options[k] = _int_option(f"tuner.{k}", v, 0)
        elif isinstance(default, float) and not isinstance(v, bool):
            options[k] = float(_number(f"tuner.{k}", v))
        elif isinstance(default, tuple):
            if not isinstance(v, (list, tuple)):
                raise ValueError(f"tuner.{k}: expected a list, got {v!r}")
            options[k] = tuple(_number(f"tuner.{k}", x) for x in v)
        elif k == "names":
            if not isinstance(v, (list, tuple)) or not all(isinstance(n, str) for n in v):
                raise ValueError(f"tuner.names: expected a list of names, got {v!r}")
            options[k] = tuple(v)
        elif isinstance(v, (list, dict)):
            raise ValueError(f"tuner.{k}: expected a single value, got {v!r}")
    return strategy, options


def from_config(source: Mapping[str, Any] | str | os.PathLike) -> TuningConfig:
    """Build a :class:`TuningConfig` from a dict or a YAML file path.

    Args:
      source: a mapping with sections ``space`` (required), ``tuner`` (required),
        ``guard`` and ``schedule``; or the path of a YAML file holding one.

    Returns:
      The validated config; ``config.build()`` gives the tuner, ``config.space``
      the space.

    Raises:
      ValueError: an unknown section, strategy or option, or an invalid value; the
        message names the key and what it accepts.

    >>> import hagfish_jax as hj
    >>> config = hj.from_config({
    ...     "space": {"learning_rate": [1e-4, 1e-1]},
    ...     "tuner": {"strategy": "finite_difference", "step": 0.05},
    ...     "schedule": {"tune_every": 2},
    ... })
    >>> config.space["learning_rate"]
    LogUniform(low=0.0001, high=0.1, dynamic=True)
    >>> tuner = config.build()
    """
    if isinstance(source, (str, os.PathLike)):
        source = load_yaml(source)
    if not isinstance(source, Mapping):
        raise ValueError(f"config: expected a mapping of sections, got {type(source).__name__}")
    _reject_unknown("config", source, _SECTIONS)
    space_section = source.get("space")
    if not isinstance(space_section, Mapping) or not space_section:
        raise ValueError("space: required, a mapping of name -> range or choice")
    for name in space_section:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"space: names must be identifiers (strings), got {name!r}")
    space = Space(**{name: _dimension(name, spec) for name, spec in space_section.items()})

    tuner_section = source.get("tuner")
    if not isinstance(tuner_section, Mapping):
        raise ValueError(f"tuner: required, a mapping with 'strategy'; got {tuner_section!r}")
    strategy, options = _tuner_options(tuner_section)

    schedule = source.get("schedule") or {}
    if not isinstance(schedule, Mapping):
        raise ValueError(f"schedule: expected a mapping, got {schedule!r}")
    _reject_unknown("schedule", schedule, _SCHEDULE_KEYS)

    population = STRATEGIES[strategy][2]
    guard_section = source.get("guard")
    if population:
        if guard_section not in (None, False) or schedule:
            raise ValueError(
                f"guard/schedule: {strategy} tunes a population; the guard and schedule apply "
                "to single-run strategies (use the tuner's 'ready' option to pace it)"
            )
        guard_opts = None
    elif guard_section is False:
        if schedule:
            raise ValueError("schedule: needs the guard; remove 'guard: false' or the schedule")
        guard_opts = None
    else:
        guard_opts = _guard_options(guard_section, schedule)

    # Build once now so factory-level validation errors surface here.
    config = TuningConfig(
        space,
        strategy,
        tuple(sorted(options.items())),
        None if guard_opts is None else tuple(sorted(guard_opts.items())),
    )
    try:  # build and start it once: whatever fails later fails here, naming the tuner
        import jax

        tuner = config.build()
        n = 4 if config.population else None
        tuner.init(jax.random.key(0), space.sample(jax.random.key(0), n))
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"tuner: {err}") from None
    return config

"""Anonymisation of every text an agent sees: configured names become neutral tokens.

An advisor that is a remote model should not learn which data set or model it tunes
(it might answer from memory rather than from the curves, or the names may be
private). A :class:`Sanitizer` replaces each configured name wherever it appears, in
any case and with any spelling of its separators:

>>> s = Sanitizer({"cifar-10": "DATASET", "resnet9": "MODEL"})
>>> s.clean("ResNet-9 on CIFAR10 (cifar_10 split); see resnet9x")
'MODEL on DATASET (DATASET split); see resnet9x'
>>> s.clean_obj({"data": "Cifar 10", "epochs": 3, "tags": ["resnet.9", 1.5]})
{'data': 'DATASET', 'epochs': 3, 'tags': ['MODEL', 1.5]}
>>> Sanitizer(["digits", "cnn"]).clean("a CNN trained on Digits")
'a NAME_2 trained on NAME_1'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["Sanitizer"]

# Letters and digits (any script); "_" is a word character but counts as a separator.
_ALNUM = r"[^\W_]"
# What may stand between two parts of a name: any run of blanks, "-", "_" or ".".
_SEPARATOR = r"[\s\-_.]*"
# A name's parts: runs of letters or runs of digits ("resnet9" -> "resnet", "9").
_PARTS = re.compile(r"[^\W\d_]+|\d+")


def _parts(name: str) -> list[str]:
    return [p.lower() for p in _PARTS.findall(name)]


class Sanitizer:
    """Replaces configured names by neutral tokens in texts and nested data.

    Matching rules for a configured name:

    * its parts are its runs of letters and runs of digits ("cifar-10" -> ``cifar``,
      ``10``; "resnet9" -> ``resnet``, ``9``);
    * in the text, the parts match in any case and may be separated by any run of
      spaces, hyphens, underscores or dots, or by nothing ("CIFAR10", "Cifar_10",
      "cifar 10", "CIFAR.10" and "ResNet-9" all match);
    * a match must stand alone: it is never directly preceded or followed by a letter or
      a digit, so "cnn" is not replaced inside "cnnx" or "2cnn" (an underscore or other
      punctuation next to it is fine: "my_cnn" becomes "my_MODEL");
    * longer names win: with "resnet" and "resnet9" configured, "ResNet-9" becomes the
      token of "resnet9". All names are replaced in one pass, so a replacement token is
      never itself rewritten.

    Args:
      names: a mapping from each name to its token (``{"digits": "DATASET"}``), or an
        iterable of names that get the tokens ``NAME_1``, ``NAME_2``, ... in order. A
        single string counts as one name. Empty (or blank) names are ignored, as are
        repeats of a name already given (same parts).
      enabled: ``False`` makes :meth:`clean` and :meth:`clean_obj` return their input.

    Raises:
      ValueError: a name without any letter or digit (e.g. ``"--"``).
      TypeError: a name or token that is not a string.
    """

    def __init__(
        self, names: Mapping[str, str] | Iterable[str] = (), *, enabled: bool = True
    ) -> None:
        if isinstance(names, str):
            names = (names,)
        pairs: list[tuple[str, str | None]]
        if isinstance(names, Mapping):
            pairs = list(names.items())
        else:
            pairs = [(name, None) for name in names]
        self.enabled = bool(enabled)
        self._names: list[str] = []
        self._tokens: list[str] = []
        keys: list[tuple[str, ...]] = []
        for name, token in pairs:
            if not isinstance(name, str):
                raise TypeError(f"a name must be a string, got {name!r}")
            if not name.strip():
                continue
            parts = tuple(_parts(name))
            if not parts:
                raise ValueError(f"name {name!r} has no letter or digit")
            if parts in keys:
                continue
            if token is None:
                token = f"NAME_{len(self._names) + 1}"
            elif not isinstance(token, str):
                raise TypeError(f"the token for {name!r} must be a string, got {token!r}")
            keys.append(parts)
            self._names.append(name)
            self._tokens.append(token)
        # Longer names first (by their letters and digits), then in the order given: at
        # a position the alternation tries them in this order.
        order = sorted(range(len(keys)), key=lambda i: -len("".join(keys[i])))
        self._order = order
        alternatives = ["(" + _SEPARATOR.join(re.escape(p) for p in keys[i]) + ")" for i in order]
        self._pattern: re.Pattern[str] | None = (
            re.compile(rf"(?<!{_ALNUM})(?:{'|'.join(alternatives)})(?!{_ALNUM})", re.IGNORECASE)
            if alternatives
            else None
        )

    @property
    def mapping(self) -> dict[str, str]:
        """Each configured name (as given) and its token, in the order given."""
        return dict(zip(self._names, self._tokens))

    def _token(self, match: re.Match[str]) -> str:
        return self._tokens[self._order[match.lastindex - 1]]

    def clean(self, text: str) -> str:
        """``text`` with every occurrence of every configured name replaced by its token.

        Args:
          text: any string.

        Returns:
          The cleaned text (``text`` itself when disabled or nothing is configured).
        """
        if not self.enabled or self._pattern is None:
            return text
        return self._pattern.sub(self._token, text)

    def clean_obj(self, obj: Any) -> Any:
        """``obj`` with :meth:`clean` applied to every string inside it.

        Dicts (and other mappings, returned as dicts) have both keys and values
        cleaned (should two keys clean to the same text, the later one wins); lists and
        tuples (named tuples included) keep their type; anything else (numbers,
        ``None``, arrays, ...) is returned unchanged.

        Args:
          obj: a string, or nested dicts, lists and tuples.

        Returns:
          A cleaned copy (``obj`` itself when disabled).
        """
        if not self.enabled:
            return obj
        if isinstance(obj, str):
            return self.clean(obj)
        if isinstance(obj, Mapping):
            return {self.clean_obj(k): self.clean_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.clean_obj(v) for v in obj]
        if isinstance(obj, tuple):
            items = [self.clean_obj(v) for v in obj]
            if hasattr(obj, "_fields"):
                return type(obj)(*items)
            return tuple(items)
        return obj

    def leaks(self, text: str) -> list[str]:
        """The configured names (as given) that occur in ``text``, in the order given.

        Matching follows :meth:`clean`'s rules, so a name shadowed by a longer one
        ("resnet" inside "ResNet-9") is not reported. Works whether or not the sanitizer
        is enabled, so tests can assert that a cleaned text has no leak left.

        Args:
          text: any string.
        """
        if self._pattern is None:
            return []
        found = {self._order[m.lastindex - 1] for m in self._pattern.finditer(text)}
        return [self._names[i] for i in sorted(found)]

    def __repr__(self) -> str:
        return f"Sanitizer({self.mapping!r}, enabled={self.enabled})"

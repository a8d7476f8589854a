"""The module grammar of the command line: ``KEY[:ARG=VALUE[:ARG=VALUE]]`` and comma-separated lists of them.

One parser for every tool that names modules (``visattn bench``, ``train``, ``compare``, ``ablate``,
``show``, ``info``), so ``sge:groups=8`` means the same everywhere. Keys are checked against the
registry and argument names against the module's constructor, each with the closest match suggested;
values are Python literals (``ast.literal_eval``: ``8``, ``0.5``, ``True``, ``(3, 5)``, ``None``) or else
plain words (``gate_layer=tanh``), and a value whose type cannot be what the argument's default is
(``reduction=abc``) is refused: ``True`` / ``False`` are not numbers, and an argument whose default is a whole
number takes whole numbers only (``se:reduction=2.5`` would build ``int(64 / 2.5) = 25`` hidden channels
without a word, so it is refused; ``reduction=8.0`` too).

Example:
    >>> parse_modules("se:reduction=8, sge:groups=8")
    [ModuleSpec(key='se', kwargs=(('reduction', 8),)), ModuleSpec(key='sge', kwargs=(('groups', 8),))]
    >>> ModuleSpec("sge", (("groups", 8),)).text
    'sge:groups=8'
"""

from __future__ import annotations

import ast
import difflib
import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .registry import info, list_modules

__all__ = ["ModuleSpec", "SpecError", "parse_module", "parse_modules", "module_arguments", "literal_or_word",
           "split_top_level"]


class SpecError(ValueError):
    """A module written on the command line that cannot be built: unknown key, argument or value type."""


@dataclass(frozen=True)
class ModuleSpec:
    """One module as the command line names it: a registry key (or ``"none"``) and keyword arguments.

    Attributes:
        key: registry key, or ``"none"`` for "no module" where a tool allows it.
        kwargs: ``(name, value)`` pairs in the order given.
    """

    key: str
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def text(self) -> str:
        """The canonical spelling, ``key:arg=value:...`` (parses back to an equal spec)."""
        return ":".join([self.key, *(f"{k}={_spell(v)}" for k, v in self.kwargs)])

    def kwargs_dict(self) -> dict[str, Any]:
        """The arguments as a dict, for ``visattn.create(key, channels, **kwargs)``."""
        return dict(self.kwargs)


def _spell(value: Any) -> str:
    text = repr(value)
    return value if isinstance(value, str) and _literal(value) is _WORD else text.replace(" ", "")


_WORD = object()


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return _WORD


def literal_or_word(text: str) -> Any:
    """``text`` as a Python literal (``8``, ``(3, 5)``, ``True``), or the plain word itself (``tanh``)."""
    value = _literal(text)
    return text if value is _WORD else value


def split_top_level(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside brackets and quotes (``psa:pool_sizes=(20,12)`` stays whole)."""
    return _split(text, sep)


def _split(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside brackets and quotes, so ``psa:pool_sizes=(20,12)`` stays whole."""
    parts, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def module_arguments(key: str) -> dict[str, Any]:
    """Keyword arguments ``key``'s constructor takes, with their defaults (``inspect.Parameter.empty`` if none)."""
    params = inspect.signature(info(key).cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}


def _check_type(key: str, name: str, value: Any, default: Any) -> None:
    def refuse(what: str) -> None:
        raise SpecError(f"{key}:{name}={_spell(value)}: {name} takes {what} (default {default!r}), "
                        f"got {type(value).__name__} {value!r}")

    if value is None or default is None or default is inspect.Parameter.empty:
        return
    if isinstance(default, bool):
        if not isinstance(value, bool):
            refuse("True or False")
    elif isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            refuse("a number")  # bool is an int to Python, never a count or a ratio here
        if isinstance(default, int) and isinstance(value, float):
            refuse("a whole number")  # an integer argument: a fraction would be truncated somewhere, silently
    elif isinstance(default, tuple):
        if not isinstance(value, (tuple, list, int, float)) or isinstance(value, bool):
            refuse("a tuple such as (3,5)")
    elif isinstance(default, str) and not isinstance(value, str):
        refuse("a word")


def _key(text: str, allow_none: bool) -> str:
    key = text.strip()
    if allow_none and key.lower() == "none":
        return "none"
    if not key:
        raise SpecError("empty module key; `visattn list` shows the keys")
    try:
        info(key)
    except KeyError:
        close = difflib.get_close_matches(key.lower(), list_modules(), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(k) for k in close)}?" if close else ""
        raise SpecError(f"unknown module {key!r}.{hint} `visattn list` shows the keys.") from None
    return key


def _arguments(key: str, items: list[str], token: str) -> tuple[tuple[str, Any], ...]:
    if key == "none":
        if items:
            raise SpecError(f"{token}: 'none' (no module) takes no arguments")
        return ()
    accepted = module_arguments(key)
    kwargs: dict[str, Any] = {}
    for item in items:
        name, eq, raw = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise SpecError(f"{token}: expected ARG=VALUE after ':', got {item!r}")
        if name not in accepted:
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(f"{token}: {key} has no argument {name!r}; {hint}it takes {', '.join(accepted)}")
        if name in kwargs:
            raise SpecError(f"{token}: {name} is given twice")
        value = _literal(raw.strip())
        value = raw.strip() if value is _WORD else value
        _check_type(key, name, value, accepted[name])
        kwargs[name] = value
    return tuple(kwargs.items())


def parse_module(text: str, *, allow_none: bool = False) -> ModuleSpec:
    """Parse one ``KEY[:ARG=VALUE[:ARG=VALUE]]``.

    Args:
        text: the module as written, e.g. ``"sge:groups=8"``.
        allow_none: accept ``none`` (no module), as train and compare do.

    Returns:
        The :class:`ModuleSpec`.

    Raises:
        SpecError: unknown key or argument (the closest suggested), malformed ``ARG=VALUE``, or a value
            of a type the argument cannot take.
    """
    token = text.strip()
    head, *items = _split(token, ":")
    key = _key(head, allow_none)
    return ModuleSpec(key, _arguments(key, items, token))


def _is_pattern(text: str) -> bool:
    return text == "all" or any(ch in text for ch in "*?[")


def parse_modules(text: str | Iterable[str], *, allow_none: bool = False, patterns: bool = False
                  ) -> list[ModuleSpec]:
    """Parse a comma-separated list (or several such strings) of modules, in order, without repeats.

    Args:
        text: ``"se,cbam:reduction=8"``, or a sequence of such strings (bench's space-separated keys).
        allow_none: accept ``none``.
        patterns: accept fnmatch patterns (``'c*'``) and ``all``, expanded over the registry keys;
            their arguments, if any, go to every key matched.

    Raises:
        SpecError: as :func:`parse_module`; an empty list; a pattern that matches nothing.
    """
    tokens = [text] if isinstance(text, str) else list(text)
    specs: list[ModuleSpec] = []
    for token in (t.strip() for chunk in tokens for t in _split(chunk, ",")):
        if not token:
            continue
        head, *items = _split(token, ":")
        if patterns and _is_pattern(head.strip()):
            keys = list_modules() if head.strip() == "all" else list_modules(head.strip())
            if not keys:
                raise SpecError(f"no module matches {head.strip()!r}; `visattn list` shows the keys")
            found = [ModuleSpec(k, _arguments(k, items, token)) for k in keys]
        else:
            found = [parse_module(token, allow_none=allow_none)]
        specs += [s for s in found if s not in specs]
    if not specs:
        raise SpecError("no module given: expected KEY[:ARG=VALUE], comma-separated (`visattn list` shows the keys)")
    return specs

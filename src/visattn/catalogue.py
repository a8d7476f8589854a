"""One registration idiom for everything visattn looks up by name: modules, backbones, decode heads, data sets.

A :class:`Catalogue` maps short names to entries (an info record per name). Each kind has one catalogue and
one decorator made from it with :meth:`Catalogue.decorator`; adding a backbone, a head or a data set is one
new file whose class or builder carries that decorator. Looking a name up loads the package that holds the
entries first (so ``list`` sees them all), and an unknown name raises ``KeyError`` with the closest names.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class ToyInfo:
    ...     key: str
    ...     obj: object
    ...     colour: str = "red"
    >>> toys = Catalogue("toy", ToyInfo, lister="`toys.keys()` lists all names.")
    >>> @toys.decorator("ball", colour="blue")
    ... def ball():
    ...     return "ball"
    >>> toys.keys(), toys.get("ball").colour
    (['ball'], 'blue')
    >>> toys.get("bal")
    Traceback (most recent call last):
    ...
    KeyError: "visattn: unknown toy 'bal'. Did you mean 'ball'? `toys.keys()` lists all names."
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Catalogue", "closest"]

E = TypeVar("E")


def closest(name: str, names: Any, n: int = 3) -> list[str]:
    """The names of ``names`` closest to ``name`` (difflib ratio at least 0.5), best first."""
    return difflib.get_close_matches(str(name).lower(), list(names), n=n, cutoff=0.5)


class Catalogue(Mapping[str, E], Generic[E]):
    """Names of one kind mapped to their info entries, filled by a decorator.

    A read-only :class:`~collections.abc.Mapping` in registration order; :meth:`add` and :meth:`remove`
    change it. ``catalogue[name]`` and :meth:`get` raise ``KeyError`` naming the closest names.

    Args:
        kind: what the names name, for messages (``"module"``, ``"backbone"``, ``"decode head"``).
        make: ``make(key, obj, **meta) -> entry``, the entry recorded for a decorated ``obj`` (usually an
            info dataclass whose first two fields are ``key`` and the object).
        package: module imported before the first look-up, whose import registers every entry (for example
            ``"visattn.modules"``); ``None``: the entries are registered where the catalogue is defined.
        lister: the sentence that ends an unknown-name message, telling how to list the names.
    """

    def __init__(self, kind: str, make: Callable[..., E], *, package: str | None = None, lister: str = ""):
        self.kind, self.make, self.package, self.lister = kind, make, package, lister
        self._entries: dict[str, E] = {}
        self._loading = False

    # ------------------------------------------------------------------ filling
    def add(self, key: str, entry: E) -> E:
        """Record ``entry`` under ``key``; ``ValueError`` if the key is taken."""
        if key in self._entries:
            raise ValueError(f"visattn: {self.kind} key {key!r} is already registered to "
                             f"{_describe(self._entries[key])}")
        self._entries[key] = entry
        return entry

    def remove(self, key: str) -> E:
        """Take ``key`` out again (for plug-ins that are unloaded, and tests); ``KeyError`` if unknown."""
        return self._entries.pop(key)

    def decorator(self, key: str, **meta: Any) -> Callable[[Any], Any]:
        """A decorator that records the decorated class or function under ``key`` with ``meta``.

        The entry is ``make(key, obj, **meta)``; the object comes back unchanged.
        """

        def register(obj: Any) -> Any:
            self.add(key, self.make(key, obj, **meta))
            return obj

        return register

    # ------------------------------------------------------------------ looking up
    def _load(self) -> None:
        if self.package is not None and not self._loading:
            self._loading = True  # importing the package may look names up while it registers them
            try:
                importlib.import_module(self.package)
            finally:
                self._loading = False

    def get(self, key: str, default: Any = None) -> E:  # type: ignore[override]
        """The entry of ``key``; ``KeyError`` with the closest names if unknown (``default`` is not used)."""
        self._load()
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            raise KeyError(self.unknown_message(key)) from None

    def unknown_message(self, key: Any) -> str:
        """``visattn: unknown <kind> 'x'. Did you mean 'y'? <lister>``: the one line for an unknown name."""
        self._load()
        near = closest(str(key), self._entries)
        hint = f" Did you mean {', '.join(repr(k) for k in near)}?" if near else ""
        tail = f" {self.lister}" if self.lister else f" Known: {', '.join(self._entries)}."
        return f"visattn: unknown {self.kind} {key!r}.{hint}{tail}"

    def keys(self, pattern: str | None = None) -> list[str]:  # type: ignore[override]
        """Sorted names, optionally filtered by an fnmatch ``pattern`` (``"resnet5*"``)."""
        self._load()
        names = sorted(self._entries)
        return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def __getitem__(self, key: str) -> E:
        return self.get(key)

    def __contains__(self, key: object) -> bool:
        self._load()
        return key in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Catalogue({self.kind!r}, {len(self._entries)} entries)"


def _describe(entry: Any) -> str:
    obj = getattr(entry, "cls", None) or getattr(entry, "obj", None) or getattr(entry, "builder", None) or entry
    return getattr(obj, "__qualname__", None) or repr(obj)

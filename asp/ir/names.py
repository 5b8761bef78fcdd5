"""C names: the prefixes that keep user names apart from generated ones, and a registry of
fresh names.

Generated C holds three kinds of names, and none may ever meet another:

* a Python variable or parameter of a scalar function, :func:`user` (``v_x``);
* an argument of a kernel's entry point, :func:`param` (``p_in_grid``);
* names asp makes up (loop counters, temporaries, flags): ``asp_*``, each handed out
  once by a :class:`Namer`.

A user's name always carries its prefix, so it cannot be a C keyword, a libm function
(``y0``, ``j1``), a macro or a generated name.  The prefixes are spelled here and
nowhere else: other modules call the functions, and nothing recognises a name by its
prefix or suffix (what a name is *for* is said by the IR itself, e.g. a loop's ``role``).
"""
from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Namer", "param", "user"]

_USER = "v_"
_PARAM = "p_"


def user(name: str) -> str:
    """The C name of a Python variable or parameter of a scalar function."""
    return _USER + name


def param(name: str) -> str:
    """The C name of a kernel's entry-point argument (an array, or a scalar)."""
    return _PARAM + name


class Namer:
    """Fresh names for one generated function, deterministic (the same translation gives
    the same names, so generated source and cache keys are stable) and never one that is
    already taken.

    ::

        names = Namer(taken={"asp_t1"})
        names.fresh()         # 'asp_t2'
        names.fresh("m")      # 'asp_m3'

    ``taken`` holds names that must not be given out: those the tree a lowering works on
    already uses, or a domain front end's user names when it keeps them unprefixed.
    """

    def __init__(self, taken: Iterable[str] = (), prefix: str = "asp_"):
        self.prefix = prefix
        self._taken = set(taken)
        self._count = 0

    def fresh(self, hint: str = "t") -> str:
        """A name not given out before: ``asp_<hint><n>``."""
        while True:
            self._count += 1
            name = f"{self.prefix}{hint}{self._count}"
            if name not in self._taken:
                self._taken.add(name)
                return name

"""The contract between a specializer and the runtime.

A specializer implements :class:`Specializer` for one user kernel: how to
validate and normalize arguments (:meth:`~Specializer.prepare`, giving a
:class:`Prepared`), how to plan the code for a signature (:meth:`~Specializer.plan`:
front end, passes, lowering, giving a :class:`Plan` of :class:`Variant` functions),
and how to run the plain Python (:meth:`~Specializer.run_python`).  The runtime
(:class:`asp.runtime.dispatch.JitKernel`) does everything else.
"""
from __future__ import annotations

import hashlib
import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from asp.frontend.names import GlobalReads
from asp.ir import platform as ir
from asp.runtime.abi import ArgSpec

__all__ = ["Plan", "Prepared", "Space", "Specializer", "Variant", "functions_of"]


@dataclass(frozen=True)
class Variant:
    """One code variant: a name the tuner reports and its lowered kernel function.

    ``bound``: integer constants the variant's entry passes to ``function`` after the
    call's own arguments (``int64_t`` parameters that end its list).  Variants that
    differ only in such values (the points of a search space over tile sizes) may share
    one function object: a translation unit holds it once, and each variant is an entry
    that calls it with its own constants, so the space costs one function's compile
    instead of one per point.

    ``calls``: other functions ``function`` calls that are not the plan's helpers (a
    sibling variant's function it hands part of the work to): a translation unit that
    holds the variant holds them too, before it, once."""

    name: str
    function: ir.Function
    bound: tuple[int, ...] = ()
    calls: tuple[ir.Function, ...] = ()

    def __post_init__(self):
        if not (self.name.isascii() and self.name.isidentifier()):
            raise ValueError(f"variant name {self.name!r}: must be a C identifier (letters, "
                             "digits, underscores): it names the variant's entry point")
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in self.bound):
            raise TypeError(f"variant {self.name}: bound values must be ints, got "
                            f"{self.bound!r}")


def functions_of(variants) -> tuple[ir.Function, ...]:
    """The distinct functions of ``variants`` and of what they call (:attr:`Variant.calls`),
    callees first, in order (variants may share one, see :attr:`Variant.bound`); two
    different functions under one name are a specializer's bug, said here rather than by
    the C compiler."""
    seen: dict[str, ir.Function] = {}
    for v in variants:
        for f in (*v.calls, v.function):
            fn = seen.setdefault(f.name, f)
            if fn is not f and fn != f:
                raise ValueError(f"variant {v.name}: another variant's function has the "
                                 f"name {fn.name!r} but other code")
    return tuple(seen.values())


@dataclass(frozen=True)
class Space:
    """A family of variants over integer parameters (tile sizes, unroll or jam factors,
    chunk or block sizes) that the tuner searches within a budget.

    ``params`` maps each parameter to the values it may take; ``make(**point)`` returns
    the :class:`Variant` of one point.  The runtime compiles ``sample`` points of the
    product (all of them if there are no more; otherwise a sample drawn with a seed
    made of the kernel and signature, so a signature always tries the same points) and
    the online tuner races them with the plain variants: after every round from the
    second on, a variant whose fastest run is clearly slower than the best median is
    dropped, so the points that lose early cost few calls.  ``ASP_TUNE=exhaustive``
    compiles and times every point.  ``asp tune show`` lists the space, the points
    tried, and why each was dropped.  ``where``: the points of the product that exist
    (a parameter that means something only for some values of another), None for all.
    ``label``, when given, names a point's variant without making it (``label(**point)``
    is ``make(**point).name``): while the points compile, the tuner then knows which of
    them a size bucket would exclude (:attr:`Prepared.unsuited`), and need not wait for
    those before it decides.
    """

    name: str
    params: dict[str, tuple[int, ...]]
    make: Callable[..., Variant]
    sample: int = 6
    where: Callable[[dict[str, int]], bool] | None = None
    label: Callable[..., str] | None = None

    def __post_init__(self):
        if self.label is not None and not callable(self.label):
            raise TypeError(f"space {self.name}: label must be a callable naming a point's "
                            f"variant (label(**point) -> str) or None, not "
                            f"{type(self.label).__name__}")

    def points(self, seed: str, whole: bool = False) -> list[dict[str, int]]:
        """The points compiled: ``sample`` of them, or all (``whole``)."""
        names = list(self.params)
        every = [dict(zip(names, values))
                 for values in itertools.product(*(self.params[n] for n in names))]
        every = [p for p in every if self.where is None or self.where(p)]
        if whole or len(every) <= self.sample:
            return every
        rng = random.Random(hashlib.sha256(f"{seed}|{self.name}".encode()).digest())
        return sorted(rng.sample(every, self.sample), key=lambda p: [p[n] for n in names])

    def pending_names(self, seed: str) -> list[str]:
        """The names of the points :meth:`points` gives, while they compile: ``label``'s,
        or without one ``space:<name>`` (a point's name is known once it is made)."""
        if self.label is None:
            return [f"space:{self.name}"]
        return [self.label(**p) for p in self.points(seed)]

    def describe(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.params.items()}


@dataclass
class Prepared:
    """A call's arguments made ready for native code, and the signature they have.

    ``args`` are what the entry receives (contiguous arrays, Python scalars);
    ``finish`` turns the entry's result into the user's (e.g. copies into a
    non-contiguous output); ``same`` says ``args`` are the user's own objects,
    so the hot path may serve the next call directly.  ``bucket`` groups
    calls of one signature that should be tuned apart (e.g. problem sizes a
    factor of four apart): the code is shared, the choice of variant is not;
    ``size_range`` is the bucket's range of element counts ``[lo, hi)`` of
    argument ``size_arg`` (default: the first array), so the hot path serves only
    calls of the same bucket; a bucketed call without a range never takes the hot
    path (it would serve every size with one bucket's winner).  ``complete``, when
    given, makes the final arguments once the runtime knows which variant the call
    runs (``complete((name,)) -> args``: the tuner's winner, or the variant it picks
    while tuning; each variant in turn in exhaustive tuning): arguments only some
    variants read and that cost time to make (a variant's plan) are made only for the
    variant that runs, and variants may read their own values from the same argument
    (the points of a search space over a plan's parameters); a SpecializationError from
    it makes the call run as Python.  ``unsuited``, when given, says why a variant
    (by name) does not suit the bucket's calls, or None: the bucket's tuner excludes
    them with that reason and never tries them, e.g. streaming stores for grids that
    fit in cache, whose next reader would fetch them from memory.
    """

    args: tuple
    signature: str
    finish: Callable[[object], object] | None = None
    same: bool = True
    bucket: str = ""
    size_range: tuple[int, int] | None = None
    size_arg: int = -1
    complete: Callable[[tuple[str, ...]], tuple] | None = None
    unsuited: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class Plan:
    """Everything needed to build one signature's variants."""

    signature: str
    specs: tuple[ArgSpec, ...]
    variants: tuple[Variant, ...]
    ret: int = -1
    errors: tuple[tuple[type[Exception], str], ...] = ()
    preamble: str = ""
    # Functions the variants call (static, usually inline): IR, so passes and
    # ASP_DUMP_IR see them.
    helpers: tuple[ir.Function, ...] = ()
    includes: tuple[str, ...] = ("stdint.h", "math.h")
    # Families of variants over integer parameters: a sample of each is added to
    # ``variants`` by the runtime (see Space).
    spaces: tuple[Space, ...] = ()
    # Small random arguments for checking each variant against the Python, or None.
    check_args: Callable[[], tuple] | None = None
    # Small arguments cut from a real call's, for when the Python raises on check_args.
    check_args_from: Callable[[tuple], tuple] | None = None
    rtol: float = 1e-9
    atol: float = 1e-12
    # A call may run twice to the same effect: its outputs are only written, never read,
    # and cannot overlap its inputs.  The tuner then times such a call right after an
    # untimed run of the same variant, as calls run in a loop: between the slow path's
    # calls, the 512^2 heat step's `static` took 124 us against 79 us back to back, while
    # a streaming variant took 128 us either way, and the two looked alike.
    repeatable: bool = False


class Specializer(ABC):
    """What a specializer provides for one user kernel."""

    #: A stable, human-readable name (kind, qualified name, file:line).
    name: str = "kernel"
    #: Digest of everything the generated code depends on besides the signature.
    digest: str = ""

    @abstractmethod
    def prepare(self, args: tuple) -> Prepared:
        """Validate ``args`` (TypeError/ValueError naming the argument) and normalize them."""

    @abstractmethod
    def plan(self, prepared: Prepared) -> Plan:
        """Front end, passes and lowering for the signature of ``prepared``."""

    @abstractmethod
    def run_python(self, args: tuple):
        """The reference: the user's Python, as written."""

    def location(self) -> str | None:
        return None

    def global_reads(self) -> GlobalReads | None:
        """The module-level and closure names the generated code depends on, as bound now
        (:func:`asp.frontend.names.global_reads` of the user's function), or None."""
        return None

    def forget(self) -> None:  # noqa: B027 - a hook; most specializers cache nothing
        """Drop whatever was derived from names that have since been rebound, or from the
        function, whose code or defaults were replaced in place (cached front-end
        results, parameters, source): the next :meth:`plan` must see the new ones."""

    def code_digest(self) -> str:
        """Digest of everything besides the signature that the generated code depends on.

        Keys the on-disk specialization record, so it must change whenever the
        code would (the kernel's source, constants it bakes in, options).
        """
        return self.digest

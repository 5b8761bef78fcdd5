"""Reductions: a scalar Python function of array elements, summed (or multiplied,
maxed, minned) over whole arrays in parallel C.

::

    from specializers.reduction import reduction

    @reduction("+")            # also "*", "max", "min"
    def energy(u, v):
        return u * u + 0.5 * v * v

    total = energy(u, v)       # a NumPy scalar: np.sum(u * u + 0.5 * v * v), in one pass

Arguments are arrays of one shape (any number of dimensions) and Python numbers. The
terms are typed as NumPy types them (NEP 50); the result has ``np.sum``'s (``np.prod``,
``np.max``, ``np.min``) dtype: small integers and booleans sum in ``int64``, ``float32``
stays ``float32`` (accumulated in double, rounded once). Integers are exact (they wrap as
NumPy's do); floating-point sums are reassociated across threads and SIMD lanes, so they
agree with NumPy's pairwise sums to within rounding (relative 1e-10 for float64 terms of
one sign). ``max``/``min`` propagate NaN as NumPy does and refuse empty arrays.
"""
from specializers.reduction.specializer import OPS, Reduction, reduction

__all__ = ["OPS", "Reduction", "reduction"]

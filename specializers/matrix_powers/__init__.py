"""Matrix powers and communication-avoiding CG.

``MatrixPowers(A, k)`` computes the Krylov basis {x, Ax, ..., A^k x} (or the
Newton basis with shifts) with generated C/OpenMP variants -- k parallel
SpMVs, PA1 cache blocking with ghost zones, and a one-pass sliding window for
banded matrices -- tuned per matrix structure.  ``cg`` is conjugate gradients
on fused kernels; ``ca_cg`` is s-step CG on the matrix-powers kernel and the
Gram matrix.

A template-style specializer: the C is in ``templates/*.c.mako``; building,
caching, guards, checks against the NumPy/SciPy references, tuning and fallback
are asp's runtime (see :mod:`specializers.matrix_powers.kernels`).
"""
from specializers.matrix_powers.powers import MatrixPowers, gram_matrix
from specializers.matrix_powers.solvers import ca_cg, cg

__all__ = ["MatrixPowers", "ca_cg", "cg", "gram_matrix"]

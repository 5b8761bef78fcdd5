"""Gaussian-mixture EM as generated C/OpenMP, tuned among parallel variants.

Two faces:

* :class:`GMM`, the published API (``GMM(M, D, cvtype='diag').train(X)``);
* :class:`GaussianMixture`, a drop-in for ``sklearn.mixture.GaussianMixture``.

Both run the E-step and M-step fused into one pass over the events: C/OpenMP
rendered from a Mako template (``templates/em.c.mako``), a specializer in the
core's template style (:mod:`specializers.gmm.kernels`).  The core builds and
caches the kernels, guards their arguments in C, checks every variant against
the kernels' NumPy reference (:mod:`specializers.gmm.reference`), chooses among
the parallel variants per (M, D, N bucket, covariance kind, dtype, threads), and
runs that reference, with one warning, whenever specialization fails.
"""
from .estimator import GaussianMixture
from .kernels import VARIANTS
from .published import GMM, Components

__all__ = ["GMM", "VARIANTS", "Components", "GaussianMixture"]

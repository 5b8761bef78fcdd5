"""Gaussian-mixture EM as generated C/OpenMP, tuned among parallel variants.

Two faces:

* :class:`GMM`, the published API (``GMM(M, D, cvtype='diag').train(X)``);
* :class:`GaussianMixture`, a drop-in for ``sklearn.mixture.GaussianMixture``.

Both run the E-step and M-step fused into one pass over the events, generated
from a Mako template (``templates/em.c.mako``), compiled through
:func:`asp.jit.build`, and chosen among several parallel variants by
:class:`asp.tune.Tuning` per (M, D, N bucket, covariance type, dtype).
:mod:`specializers.gmm.reference` is the NumPy EM that matches scikit-learn
step for step; it runs, with one warning, whenever specialization fails.
"""
from .estimator import GaussianMixture
from .kernels import VARIANTS
from .published import GMM, Components

__all__ = ["GMM", "VARIANTS", "Components", "GaussianMixture"]

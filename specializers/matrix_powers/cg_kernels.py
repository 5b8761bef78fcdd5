"""The fused kernels of ``cg`` and ``ca_cg``, one single-variant template kernel each.

CG's four (templates/cg.c.mako) read and write their vectors in one pass and return
their dot product as the entry's scalar result:

* ``spmv_dot(matrix, p, q, out)``: q = A p, returns p.q;
* ``residual(matrix, x, b, r, out)``: r = b - A x, returns r.r;
* ``update(x, r, p, q, out, alpha)``: x += alpha p, r -= alpha q, returns r.r;
* ``direction(p, r, beta)``: p = r + beta p.

The two that read the matrix take its :class:`~specializers.matrix_powers.kernels.Matrix`
first (its analysed structure gives the kernel's CSR and diagonal-run arguments);
the others take exactly their entry's arguments, so the runtime's hot entry serves them.

The s-step solver's two (templates/sstep.c.mako) are generated per basis size m = 2s+1,
every sum written out: ``gram(Y, G)`` (G = Y Y^T) and ``recover(Y, x, coef, out, ip,
ir)`` (x += Y^T c0, Y[ir] = Y^T c1, Y[ip] = Y^T c2, returns the new r.r).
"""
from __future__ import annotations

import numpy as np

from asp import config
from asp.codegen.template import template_function
from asp.runtime import ArgSpec, Plan, Prepared, Variant
from specializers.matrix_powers.kernels import (
    ERRORS,
    F64,
    I64,
    INCLUDES,
    MATRIX_NAMES,
    PAR_MIN,
    Matrix,
    TemplateKernel,
    c_context,
    check_structure,
    csr_of,
    matrix_helpers,
    matrix_preamble,
    matrix_specs,
    render_def,
)

__all__ = ["CG_OPS", "CGKernel", "SStepKernel"]

#: op -> (its arguments after the matrix, those it writes, whether it reads the matrix)
CG_OPS = {
    "spmv_dot": (("p", "q", "out"), {"q", "out"}, True),
    "residual": (("x", "b", "r", "out"), {"r", "out"}, True),
    "update": (("x", "r", "p", "q", "out", "alpha"), {"x", "r", "out"}, False),
    "direction": (("p", "r", "beta"), {"p"}, False),
}
_SCALARS = {"alpha", "beta"}


def _vector(name: str, v, n: int | None, write: bool) -> int:
    """Raise naming ``name`` unless ``v`` is a float64 vector the kernel can take."""
    if not isinstance(v, np.ndarray) or v.dtype != F64 or v.ndim != 1:
        raise TypeError(f"{name} must be a 1-D float64 numpy array")
    if n is not None and v.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {v.shape}")
    if not (v.flags.c_contiguous and v.flags.aligned) or (write and not v.flags.writeable):
        raise ValueError(f"{name} must be C-contiguous, aligned{' and writeable' * write}")
    return v.shape[0]


class CGKernel(TemplateKernel):
    """One fused CG kernel (``op`` of :data:`CG_OPS`)."""

    def __init__(self, op: str):
        super().__init__(f"cg_{op}", (op,))
        self.op = op
        self.vectors, self.writes, self.reads_matrix = CG_OPS[op]
        self.names = (*MATRIX_NAMES, *self.vectors) if self.reads_matrix else self.vectors

    def prepare(self, args: tuple) -> Prepared:
        want = len(self.vectors) + self.reads_matrix
        if len(args) != want:
            raise TypeError(f"{self.name}: expected {want} arguments, got {len(args)}")
        n, entry, signature = None, args, "f64"
        if self.reads_matrix:
            st = args[0].structure()
            if st.csr.dtype != F64:
                raise TypeError(f"{self.name}: the matrix must be float64, not {st.csr.dtype}")
            n, entry = st.csr.shape[0], (*st.arrays, *args[1:])
            signature = st.signature
        for name, v in zip(self.vectors, args[self.reads_matrix:]):
            if name in _SCALARS:
                if not isinstance(v, float):
                    raise TypeError(f"{name} must be a float, not {type(v).__name__}")
            elif name == "out":
                _vector(name, v, 1, True)
            else:
                n = _vector(name, v, n, name in self.writes)
        return Prepared(entry, signature, same=not self.reads_matrix)

    def specs(self, idtype: np.dtype, nd: int) -> tuple[ArgSpec, ...]:
        out = []
        for name in self.vectors:
            if name in _SCALARS:
                out.append(ArgSpec("float"))
            elif name == "out":
                out.append(ArgSpec("array", F64, 1, write=True, shape=(1,), scalar=True))
            else:
                out.append(ArgSpec("array", F64, 1, write=name in self.writes, group=0))
        return (*matrix_specs(F64, idtype, nd), *out) if self.reads_matrix else tuple(out)

    def plan(self, prepared: Prepared) -> Plan:
        if self.reads_matrix:
            idtype, nd = prepared.args[1].dtype, prepared.args[4].size
        else:
            idtype, nd = I64, 0
        ctx = c_context(F64, idtype, nd)
        specs = self.specs(idtype, nd)
        body = render_def("cg.c.mako", self.op, kernel=self.name, **ctx)
        fn = template_function(f"cg_{self.op}", self.names, specs, body)
        return Plan(prepared.signature, specs, (Variant(self.op, fn),),
                    ret=self.names.index("out") if "out" in self.names else -1,
                    errors=ERRORS, preamble=matrix_preamble(self.name, ctx),
                    helpers=matrix_helpers(self.name, ctx) if self.reads_matrix else (),
                    includes=INCLUDES, check_args=lambda: self.check_args(idtype, nd),
                    rtol=1e-10, atol=1e-12)

    def check_args(self, idtype: np.dtype, nd: int) -> tuple:
        """Random vectors (and, for the matrix kernels, the 400-row check matrix)."""
        rng = np.random.default_rng(11)
        st = check_structure(nd, F64, idtype) if self.reads_matrix else None
        n = st.csr.shape[0] if st else 1000
        args = []
        for name in self.vectors:
            if name in _SCALARS:
                args.append(0.75)
            elif name == "out":
                args.append(np.zeros(1))
            else:
                args.append(rng.standard_normal(n))
        return (*st.arrays, *args) if st else tuple(args)

    def run_python(self, args: tuple):
        """The reference, from the caller's arguments or from the kernel's own."""
        if self.reads_matrix:
            if isinstance(args[0], Matrix):
                A, vecs = args[0].A, args[1:]
            else:
                A, vecs = csr_of(args), args[len(MATRIX_NAMES):]
        else:
            vecs = args
        v = dict(zip(self.vectors, vecs, strict=True))
        if self.op == "spmv_dot":
            v["q"][:] = A @ v["p"]
            result = v["p"] @ v["q"]
        elif self.op == "residual":
            v["r"][:] = v["b"] - A @ v["x"]
            result = v["r"] @ v["r"]
        elif self.op == "update":
            v["x"] += v["alpha"] * v["p"]
            v["r"] -= v["alpha"] * v["q"]
            result = v["r"] @ v["r"]
        else:
            v["p"] *= v["beta"]
            v["p"] += v["r"]
            return None
        v["out"][0] = result
        return v["out"][0]


class SStepKernel(TemplateKernel):
    """``gram`` or ``recover`` of an s-step basis; the signature is the basis size m."""

    NAMES = {"gram": ("Y", "G"), "recover": ("Y", "x", "coef", "out", "ip", "ir")}

    def __init__(self, kind: str):
        super().__init__(f"sstep_{kind}", (kind,))
        self.kind = kind
        self.names = self.NAMES[kind]

    def prepare(self, args: tuple) -> Prepared:
        if len(args) != len(self.names):
            raise TypeError(f"{self.name}: expected {len(self.names)} arguments, "
                            f"got {len(args)}")
        Y = args[0]
        if not isinstance(Y, np.ndarray) or Y.dtype != F64 or Y.ndim != 2 or Y.shape[0] < 1:
            raise TypeError("Y must be a 2-D float64 numpy array (the basis, one vector a row)")
        if not (Y.flags.c_contiguous and Y.flags.aligned):
            raise ValueError("Y must be C-contiguous and aligned")
        m, n = Y.shape
        if self.kind == "gram":
            _matrix("G", args[1], (m, m), write=True)
        else:
            _vector("x", args[1], n, True)
            _matrix("coef", args[2], (3, m), write=False)
            _vector("out", args[3], 1, True)
            ip, ir = args[4:6]
            if not all(isinstance(i, int) and 0 <= i < m for i in (ip, ir)) or ip == ir:
                raise ValueError(f"ip and ir must be two different rows of Y (0..{m - 1}), "
                                 f"got {ip!r}, {ir!r}")
        return Prepared(args, f"m{m}", same=True)

    def plan(self, prepared: Prepared) -> Plan:
        m = prepared.args[0].shape[0]
        if self.kind == "gram":
            specs = (ArgSpec("array", F64, 2, shape=(m, -1)),
                     ArgSpec("array", F64, 2, write=True, shape=(m, m)))
        else:
            specs = (ArgSpec("array", F64, 2, write=True, shape=(m, -1)),
                     ArgSpec("array", F64, 1, write=True),
                     ArgSpec("array", F64, 2, shape=(3, m)),
                     ArgSpec("array", F64, 1, write=True, shape=(1,), scalar=True),
                     ArgSpec("int"), ArgSpec("int"))
        body = render_def("sstep.c.mako", self.kind, kernel=self.name, m=m,
                          pairs=[(i, j) for i in range(m) for j in range(i + 1)],
                          par_min=config.parallel_threshold(PAR_MIN))
        fn = template_function(f"sstep_{self.kind}", self.names, specs, body)
        errors = () if self.kind == "gram" else (
            (ValueError, "s-step recovery: x must have one entry per column of Y, and ip, "
                         "ir two different rows of Y"),)
        return Plan(prepared.signature, specs, (Variant(self.kind, fn),),
                    ret=3 if self.kind == "recover" else -1, errors=errors,
                    includes=("stdint.h",), check_args=lambda: self.check_args(m),
                    rtol=1e-10, atol=1e-12)

    def check_args(self, m: int) -> tuple:
        rng = np.random.default_rng(13)
        Y = rng.standard_normal((m, 300))
        if self.kind == "gram":
            return (Y, np.zeros((m, m)))
        return (Y, rng.standard_normal(300), rng.standard_normal((3, m)), np.zeros(1), 0,
                (m + 1) // 2)

    def run_python(self, args: tuple):
        Y = args[0]
        if self.kind == "gram":
            G = Y @ Y.T
            args[1][:] = np.tril(G) + np.tril(G, -1).T  # symmetric, as the kernel's
            return None
        x, coef, out, ip, ir = args[1:]
        new = coef @ Y
        x += new[0]
        Y[ir], Y[ip] = new[1], new[2]
        out[0] = new[1] @ new[1]
        return out[0]


def _matrix(name: str, a, shape: tuple[int, int], write: bool) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != F64 or a.shape != shape:
        raise TypeError(f"{name} must be a float64 numpy array of shape {shape}")
    if not (a.flags.c_contiguous and a.flags.aligned) or (write and not a.flags.writeable):
        raise ValueError(f"{name} must be C-contiguous, aligned{' and writeable' * write}")

"""Setup of the matrix-powers variants: bandwidths, reordering, PA1 ghost zones, chunks.

Everything here is vectorized with numpy/scipy (sparse boolean products, CSR
index arithmetic); nothing loops over rows in Python, so the setup of a
4-million-row matrix takes a fraction of a second per variant.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["Pa1Plan", "bandwidths", "diagonal_runs", "diagonal_values", "fingerprint",
           "pa1_plan", "rcm_permutation", "window_chunks"]


def bandwidths(indptr: np.ndarray, indices: np.ndarray, n: int) -> tuple[int, int]:
    """(lower, upper) bandwidth: max(i - j) and max(j - i) over the stored entries."""
    if indices.size == 0:
        return 0, 0
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    d = indices.astype(np.int64, copy=False) - rows
    return int(max(0, -d.min())), int(max(0, d.max()))


def fingerprint(indptr: np.ndarray, indices: np.ndarray, n: int) -> str:
    """A stable digest of the sparsity structure (sampled, so cheap on huge matrices)."""
    step = max(1, indices.size // 65536)
    h = hashlib.blake2b(digest_size=12)
    h.update(np.array([n, indices.size], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(indptr[:: max(1, n // 65536)], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(indices[::step], dtype=np.int64).tobytes())
    return h.hexdigest()


def rcm_permutation(A: sp.csr_matrix, symmetric: bool | None) -> np.ndarray:
    """Reverse Cuthill-McKee order of A's rows (scipy.sparse.csgraph)."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    return reverse_cuthill_mckee(A, symmetric_mode=bool(symmetric))


def window_chunks(n: int, levels: int, bl: int, bu: int, chunks: int) -> np.ndarray:
    """Row boundaries of up to ``chunks`` chunks, each wide enough for the seam fix-up."""
    need = levels * (bl + bu) + 1
    t = max(1, min(chunks, n // max(need, 1)))
    return np.linspace(0, n, t + 1).round().astype(np.int64)


@dataclass(frozen=True)
class Pa1Plan:
    """PA1 blocks and their ghost zones, as arrays the kernel reads directly.

    For block ``b`` and level ``l`` (1..k-1), the rows to compute are the runs
    ``runs[runptr[j]:runptr[j+1]]`` (``[start, end)`` pairs) with
    ``j = b*(k-1) + l-1``; ``base[b]`` is the lowest of them, and ``span`` the
    widest range any block touches (the scratch length per level).
    """

    k: int
    blk: np.ndarray
    runptr: np.ndarray
    runs: np.ndarray
    base: np.ndarray
    span: int
    redundant_rows: int

    @property
    def nbytes(self) -> int:
        return self.blk.nbytes + self.runptr.nbytes + self.runs.nbytes + self.base.nbytes


def pa1_plan(indptr: np.ndarray, indices: np.ndarray, n: int, k: int,
             block_rows: int) -> Pa1Plan:
    """Ghost zones of contiguous row blocks of ``block_rows`` rows, for ``k`` levels.

    Level k of block b needs its own rows; level l-1 needs the rows of level l
    and every column they reference: ``R[l-1] = R[l] + R[l] @ pattern(A)``,
    done for all blocks at once as boolean sparse products.
    """
    nb = max(1, -(-n // block_rows))
    blk = np.minimum(np.arange(nb + 1, dtype=np.int64) * block_rows, n)
    pattern = sp.csr_matrix((np.ones(indices.size, dtype=bool), indices, indptr), shape=(n, n))
    owner = np.repeat(np.arange(nb), np.diff(blk))
    reach = sp.csr_matrix((np.ones(n, dtype=bool), (owner, np.arange(n))), shape=(nb, n))
    levels = []
    for _ in range(k - 1):
        reach = (reach + reach @ pattern).tocsr()
        reach.sum_duplicates()
        reach.sort_indices()
        levels.append(reach)
    levels.reverse()  # levels[l-1] is R[l], for l = 1..k-1
    run_counts = np.zeros((nb, max(k - 1, 0)), dtype=np.int64)
    starts_all = []
    redundant = 0
    base = blk[:-1].copy()
    span = int(np.max(np.diff(blk))) if n else 1
    for li, R in enumerate(levels):
        cols = R.indices.astype(np.int64)
        row_of = np.repeat(np.arange(nb), np.diff(R.indptr))
        # a run starts at a row's first column or wherever columns stop being consecutive
        new = np.ones(cols.size, dtype=bool)
        new[1:] = (cols[1:] != cols[:-1] + 1) | (row_of[1:] != row_of[:-1])
        first = np.flatnonzero(new)
        # [: first.size]: no runs at all (a 0x0 matrix) must give no last index either
        last = np.append(first[1:], cols.size)[: first.size] - 1
        starts_all.append((row_of[first], li, cols[first], cols[last] + 1))
        run_counts[:, li] = np.bincount(row_of[first], minlength=nb)
        redundant += int(cols.size) - n
        if li == 0 and cols.size:
            lo = np.minimum.reduceat(cols, R.indptr[:-1].clip(max=cols.size - 1))
            hi = np.maximum.reduceat(cols, R.indptr[:-1].clip(max=cols.size - 1))
            has = np.diff(R.indptr) > 0
            base = np.where(has, np.minimum(lo, blk[:-1]), blk[:-1]).astype(np.int64)
            top = np.where(has, np.maximum(hi + 1, blk[1:]), blk[1:])
            span = int(np.max(top - base))
    if levels:
        blocks = np.concatenate([s[0] for s in starts_all])
        lvl = np.concatenate([np.full(s[0].size, s[1]) for s in starts_all])
        order = np.lexsort((np.concatenate([s[2] for s in starts_all]), lvl, blocks))
        runs = np.empty((order.size, 2), dtype=np.int64)
        runs[:, 0] = np.concatenate([s[2] for s in starts_all])[order]
        runs[:, 1] = np.concatenate([s[3] for s in starts_all])[order]
    else:
        runs = np.zeros((0, 2), dtype=np.int64)
    runptr = np.concatenate([[0], np.cumsum(run_counts.ravel())]).astype(np.int64)
    return Pa1Plan(k=k, blk=blk, runptr=runptr, runs=np.ascontiguousarray(runs.ravel()),
                   base=np.ascontiguousarray(base), span=max(span, 1),
                   redundant_rows=redundant)


def diagonal_runs(indptr: np.ndarray, indices: np.ndarray, n: int, *,
                  max_diagonals: int = 16, min_coverage: float = 0.5
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The dominant row pattern as diagonal offsets, and the runs of rows that follow it.

    A row follows the pattern ``offsets`` if its stored entries are exactly in
    columns ``r + offsets`` in that order (the interior rows of a stencil
    matrix).  Returns ``(offsets, runs)`` with ``runs`` flattened
    ``[start, end)`` pairs, or two empty arrays when under ``min_coverage`` of
    the rows follow one pattern.
    """
    none = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    if n == 0 or indices.size == 0:
        return none
    lengths = np.diff(indptr)
    width = int(np.bincount(lengths).argmax())
    if not 1 <= width <= max_diagonals:
        return none
    rows = np.flatnonzero(lengths == width)
    if rows.size < min_coverage * n:
        return none
    start = indptr[rows]
    step = max(1, rows.size // 4096)
    sample = indices[start[::step, None] + np.arange(width)].astype(np.int64) \
        - rows[::step, None]
    patterns, counts = np.unique(sample, axis=0, return_counts=True)
    offsets = patterns[counts.argmax()]
    # One diagonal at a time, in the index type: no (rows, width) int64 temporaries (a
    # solver analyses its matrix once per solve; this was most of that time).
    follows = np.ones(rows.size, dtype=bool)
    here = rows.astype(indices.dtype, copy=False)
    for j, offset in enumerate(offsets):
        follows &= indices[start + j] - here == offset
    follow = np.zeros(n + 2, dtype=np.int8)
    follow[rows[follows] + 1] = 1
    if follow.sum() < min_coverage * n:
        return none
    edges = np.diff(follow)
    begin, end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs = np.empty(2 * begin.size, dtype=np.int64)
    runs[0::2], runs[1::2] = begin, end
    return np.ascontiguousarray(offsets, dtype=np.int64), runs


def diagonal_values(indptr: np.ndarray, data: np.ndarray, n: int, nd: int,
                    runs: np.ndarray) -> np.ndarray:
    """The values of the rows in ``runs``, diagonal by diagonal: ``out[j*n + r]`` is row
    r's j-th stored entry (its value on diagonal ``offsets[j]``), 0 outside the runs.

    CSR keeps a row's ``nd`` values together, so a loop over rows reads each diagonal
    with a stride of ``nd``; AVX2 has no strided load, and on a 5-point matrix that loop
    ran 2.2x slower from cache than over this layout (contiguous, one vector load per
    diagonal).  Only rows inside runs are read, so the zeros elsewhere never meet a
    column (no 0 x inf).  Costs ``nd`` values per row beside CSR's own.
    """
    out = np.zeros(nd * n, dtype=data.dtype)
    if nd == 0 or runs.size == 0:
        return out
    edges = np.zeros(n + 1, dtype=np.int64)  # +1 where a run starts, -1 where it ends
    np.add.at(edges, runs[0::2], 1)
    np.add.at(edges, runs[1::2], -1)
    rows = np.flatnonzero(np.cumsum(edges[:n]))  # the rows inside a run
    first = indptr[rows].astype(np.int64, copy=False)
    for j in range(nd):
        out[j * n + rows] = data[first + j]
    return out

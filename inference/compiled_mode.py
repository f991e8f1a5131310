"""The compilation mode of the compiled backend: PyTensor's Numba mode, with matrix products through ``np.dot``.

PyTensor's Numba backend implements ``Dot`` and ``BatchedDot`` with its own BLAS ``gemm`` wrapper, which reads
strided operands without copying them. Numba takes 10 to 15 seconds to compile that wrapper, anew for every
combination of operand layouts, and a model's gradient holds several: a logistic regression's ``X @ beta`` and its
transpose ``X.T @ g`` cost 29 of its 39 seconds of compilation on an empty cache, the missing-data model's batched
products 43 of 92. Numba's own ``np.dot`` (the same BLAS underneath) compiles in under a second.

:data:`COMPILED_MODE` is PyTensor's Numba mode plus one late rewrite that swaps each floating-point ``Dot`` and
``BatchedDot`` for a subclass (:class:`NpDot`, :class:`NpBatchedDot`) whose Numba implementation calls ``np.dot``.
The subclasses compute the same products (their Python ``perform`` is the parent's); only this mode uses them,
so other PyTensor functions in the same process are left as they were.
"""

from __future__ import annotations

import numpy as np
from pytensor.compile.mode import get_mode
from pytensor.graph.rewriting.basic import dfs_rewriter, node_rewriter
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
from pytensor.tensor.blas import BatchedDot
from pytensor.tensor.math import Dot

__all__ = ["COMPILED_MODE", "NpBatchedDot", "NpDot"]

_FLOATS = frozenset(np.dtype(name) for name in ("float32", "float64"))


class NpDot(Dot):
    """``Dot`` whose Numba implementation is ``np.dot`` (see the module docstring)."""


class NpBatchedDot(BatchedDot):
    """``BatchedDot`` whose Numba implementation loops ``np.dot`` over the batch (see the module docstring)."""


# Below this many multiply-adds (M * K * N) a product runs as plain loops: a BLAS call through ``np.dot`` costs a
# few microseconds of checks and copies, far more than a 3 x 3 product (the missing-data model multiplies one small
# matrix per missingness pattern, at every gradient).
SMALL_PRODUCT = 4096


@numba_basic.numba_njit
def _product(x, y, out):
    m, k = x.shape
    n = y.shape[1]
    if m * k * n <= SMALL_PRODUCT:
        for i in range(m):
            for j in range(n):
                acc = 0.0
                for t in range(k):
                    acc += x[i, t] * y[t, j]
                out[i, j] = acc
    else:
        out[:] = np.dot(x, y)
    return out


@register_funcify_default_op_cache_key(NpDot)
def _numba_np_dot(op, node, **kwargs):
    dtype = node.outputs[0].type.numpy_dtype

    @numba_basic.numba_njit
    def np_dot(x, y):
        return _product(x, y, np.empty((x.shape[0], y.shape[1]), dtype=dtype))

    return np_dot, 1


@register_funcify_default_op_cache_key(NpBatchedDot)
def _numba_np_batched_dot(op, node, **kwargs):
    dtype = node.outputs[0].type.numpy_dtype

    @numba_basic.numba_njit
    def np_batched_dot(x, y):
        out = np.empty((x.shape[0], x.shape[1], y.shape[2]), dtype=dtype)
        for i in range(x.shape[0]):
            _product(x[i], y[i], out[i])
        return out

    return np_batched_dot, 1


def _same_float_dtype(node) -> bool:
    dtypes = {v.type.numpy_dtype for v in (*node.inputs, *node.outputs)}
    return len(dtypes) == 1 and dtypes <= _FLOATS


@node_rewriter([Dot, BatchedDot])
def _use_np_dot(fgraph, node):
    if type(node.op) not in (Dot, BatchedDot) or not _same_float_dtype(node):
        return None
    op = NpDot() if type(node.op) is Dot else NpBatchedDot()
    return op.make_node(*node.inputs).outputs


# After elemwise fusion (49) and before the in-place rewrites (from 49.5), so nothing later depends on the op type.
COMPILED_MODE = get_mode("NUMBA").register((dfs_rewriter(_use_np_dot), 49.4))

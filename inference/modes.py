"""The two compilation modes of a model's functions (:mod:`inference.functions`).

``PY_MODE``, the uncompiled backend: PyTensor's rewritten graph run by NumPy, with nothing to compile. PyTensor
builds softmax and log-softmax as ``OpFromGraph`` ops whose inner graph it links with C thunks, compiled by the C
compiler on an empty cache: 13 to 23 seconds before the first call of a mixture's log-likelihood. ``PY_MODE``
inlines every ``OpFromGraph`` (but those made for a backend, such as fused loops) once the rewrites that create them
have run, each inner graph first rewritten as the mode rewrites a whole graph, so the whole graph runs on NumPy: the
same first call takes half a second. A batched one (``Blockwise``: the logsumexp of a log density vectorised over
draws) is replaced by its inner graph vectorised, which took the first scoring of a mixture's draws from 12 s to
0.24 s on an empty cache.

``COMPILED_MODE``, the compiled backend: PyTensor's Numba mode, with the same inlining of unbatched ones (Numba
compiles each ``OpFromGraph`` as a function of its own; inlined, a mixture's density compiles in 19 s instead of 26
on an empty cache, and runs as fast) and with matrix products through ``np.dot``. Batched ones stay: Numba loops
them, and their vectorised inner graph may hold batched ops it has no implementation for (a batched ``diag``'s
``arange``, which it would run in object mode).
PyTensor's Numba backend implements ``Dot`` and ``BatchedDot`` with its own BLAS ``gemm`` wrapper, which reads
strided operands without copying them. Numba takes 10 to 15 seconds to compile that wrapper, anew for every
combination of operand layouts, and a model's gradient holds several: a logistic regression's ``X @ beta`` and its
transpose ``X.T @ g`` cost 29 of its 39 seconds of compilation on an empty cache, the missing-data model's batched
products 43 of 92. Numba's own ``np.dot`` (the same BLAS underneath) compiles in under a second.
``COMPILED_MODE`` adds one late rewrite that swaps each floating-point ``Dot`` and ``BatchedDot`` for a subclass
(:class:`NpDot`, :class:`NpBatchedDot`) whose Numba implementation calls ``np.dot``. The subclasses compute the
same products (their Python ``perform`` is the parent's).

Both are rewrites of these modes only (``Mode.register``): other PyTensor functions in the same process are left as
they were.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np
import pytensor
from pytensor.compile.builders import FinalizedOpFromGraph, OpFromGraph, SymbolicOp
from pytensor.compile.mode import Mode, get_mode
from pytensor.compile.rewriting import inline_ofg_node
from pytensor.graph.replace import vectorize_graph
from pytensor.graph.rewriting.basic import dfs_rewriter, node_rewriter
from pytensor.link.numba.dispatch import basic as numba_basic
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
from pytensor.tensor.blas import BatchedDot
from pytensor.tensor.blockwise import Blockwise
from pytensor.tensor.math import Dot

__all__ = ["COMPILED_MODE", "PY_MODE", "NpBatchedDot", "NpDot", "untraced"]

_FLOATS = frozenset(np.dtype(name) for name in ("float32", "float64"))


class NpDot(Dot):
    """``Dot`` whose Numba implementation is ``np.dot`` (see the module docstring)."""


class NpBatchedDot(BatchedDot):
    """``BatchedDot`` whose Numba implementation loops ``np.dot`` over the batch (see the module docstring)."""


# Below this many multiply-adds (M * K * N) a product runs as plain loops: a BLAS call through ``np.dot`` costs a
# few microseconds of checks and copies, far more than a 3 x 3 product (the missing-data model multiplies one small
# matrix per missingness pattern, at every gradient).
SMALL_PRODUCT = 4096
# The cache version of the products' Numba functions, which ``_product`` is compiled into: bump it when
# ``_product`` changes, or a filled cache keeps the old code.
_PRODUCT_VERSION = 1


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

    return np_dot, _PRODUCT_VERSION


@register_funcify_default_op_cache_key(NpBatchedDot)
def _numba_np_batched_dot(op, node, **kwargs):
    dtype = node.outputs[0].type.numpy_dtype

    @numba_basic.numba_njit
    def np_batched_dot(x, y):
        out = np.empty((x.shape[0], x.shape[1], y.shape[2]), dtype=dtype)
        for i in range(x.shape[0]):
            _product(x[i], y[i], out[i])
        return out

    return np_batched_dot, _PRODUCT_VERSION


def _same_float_dtype(node) -> bool:
    dtypes = {v.type.numpy_dtype for v in (*node.inputs, *node.outputs)}
    return len(dtypes) == 1 and dtypes <= _FLOATS


@node_rewriter([Dot, BatchedDot])
def _use_np_dot(fgraph, node):
    if type(node.op) not in (Dot, BatchedDot) or not _same_float_dtype(node):
        return None
    op = NpDot() if type(node.op) is Dot else NpBatchedDot()
    return op.make_node(*node.inputs).outputs


def _inlinable(op) -> bool:
    # not those made for the backend (fused elementwise loops): kept whole
    return isinstance(op, OpFromGraph) and not isinstance(op, FinalizedOpFromGraph)


@node_rewriter([OpFromGraph])
def _inline(fgraph, node):
    return inline_ofg_node(node) if _inlinable(node.op) else None


@functools.lru_cache(maxsize=512)
def _rewritten(op):
    # The op with its inner graph rewritten as ``PY_MODE`` rewrites a whole graph (nested ones inlined in turn).
    # Inlined at 48.5, an inner graph misses canonicalisation and specialisation, which run earlier: a gradient's
    # ``second`` (a broadcast, which the Python linker runs as one Python call per element) stayed, and a mixture's
    # MLE with observed-information errors over a million rows took 16 s instead of 6, most of it in that Hessian.
    # Cached: ops with equal inner graphs are equal.
    inner = op.fgraph.unfreeze()
    # as PyTensor rewrites an inner graph it compiles: a softmax's rewrites would re-create it inside its own graph
    (_PY_MODE_SYMBOLIC if isinstance(op, SymbolicOp) else PY_MODE).optimizer.rewrite(inner)
    return op.clone_with_inner_graph(inner)


@node_rewriter([OpFromGraph])
def _inline_rewritten(fgraph, node):
    return inline_ofg_node(_rewritten(node.op).make_node(*node.inputs)) if _inlinable(node.op) else None


@node_rewriter([Blockwise])
def _inline_batched(fgraph, node):
    # a batched one (a vectorised logsumexp): its rewritten inner graph, vectorised. Only uncompiled: Numba compiles a
    # batched OpFromGraph as a loop, and a vectorised inner graph may batch ops it has no loop for (a batched diag's
    # arange).
    if not _inlinable(node.op.core_op):
        return None
    inner = _rewritten(node.op.core_op).fgraph.unfreeze()
    return vectorize_graph(list(inner.outputs), replace=dict(zip(inner.inputs, node.inputs)))


# Inlining: after canonicalisation, stabilisation and specialisation (which create the softmax ops), before elemwise
# fusion. The products' rewrite: after elemwise fusion (49) and before the in-place rewrites (from 49.5), so nothing
# later depends on the op type.
_INLINE_AT, _PRODUCTS_AT = 48.5, 49.4
# As in PyMC's own compiled functions (``pymc.pytensorf.compile`` on a model with ``check_bounds``), a parameter
# outside its domain makes the log density -inf instead of raising, so an optimiser's or a sampler's step there is
# rejected rather than ending the fit.
_CHECKS = "local_check_parameter_to_ninf_switch"
PY_MODE = Mode(linker="py", optimizer="fast_run").excluding("fusion", "inplace").including(_CHECKS).register(
    (dfs_rewriter(_inline_rewritten, _inline_batched), _INLINE_AT))
_PY_MODE_SYMBOLIC = PY_MODE.excluding("symbolic_op_recognition")
COMPILED_MODE = get_mode("NUMBA").including(_CHECKS).register((dfs_rewriter(_inline), _INLINE_AT),
                                                              (dfs_rewriter(_use_np_dot), _PRODUCTS_AT))


@contextlib.contextmanager
def untraced():
    """PyTensor without its stack trace on every variable it creates.

    PyTensor records where each new variable was made (``tag.trace``, up to ``traceback__limit`` frames), for error
    messages that point at the user's line. Building, differentiating and rewriting the library's own graphs of a
    model creates tens of thousands of variables; their traces took about 1 s of a 26 s warm ``zoo compare`` of the
    five default models. The graphs built inside point at no line of the user's, so they are built with
    ``traceback__limit=0``. A limit the user set (any value but PyTensor's default) is kept."""
    var = pytensor.config._config_var_dict.get("traceback__limit")
    if var is None or pytensor.config.traceback__limit != var.default:
        yield
        return
    with pytensor.config.change_flags(traceback__limit=0):
        yield

"""The model-description protocol: what a model tells the generic algorithms. Imports no algorithm.

A model (the zoo's own in ``models/``, or one from any installed package) is described once by a
:class:`ModelSpec` (name, declaration, simulator, examples, options) and registered under the Python entry-point group
``estimator_zoo.models`` (see :mod:`inference.registry`). Every ``pm.Model`` its ``build`` returns carries a
:class:`ModelHooks` (attached with :func:`attach`): the hand-derived EM math, a data-driven start, the labelling of
mixture components, and so on. The algorithms call these hooks and never a model by name. Copies of a model
(``pm.do``, ``remove_value_transforms``) and models built by hand carry no hooks: MLE, MAP, VI and NUTS run on them all
the same; only EM needs the hand-derived math.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["EMMath", "Example", "ModelHooks", "ModelSpec", "Option", "SufficientEM", "VEMMath", "attach",
           "hooks_for"]


@dataclass(frozen=True)
class SufficientEM:
    """EM of a model whose complete-data likelihood is an exponential family: the E-step is a sum over rows.

    For such a model the E-step needs the data only through the expected sufficient statistics
    s(theta) = sum_i E[t(x_i, z_i) | x_i, theta], a sum over rows, and the M-step is a function of s alone. The sum
    can be taken chunk by chunk, in any grouping of the rows: that is what makes EM run beyond memory (exact EM
    over chunks), over the workers of a cluster, online (Cappe & Moulines 2009, JRSS B 71:593, who average s with
    decreasing steps) and incrementally (Neal & Hinton 1998, who replace one chunk's share of s at a time).

    prepare(rows) -> chunk : validates raw rows (as read from a file: an (n, columns) float array) and computes what
        every E-step on them reuses (features, distinct values, missingness patterns). ValueError naming ``X``.
    chunk_stats(params, chunk) -> dict of arrays : the expected sufficient statistics summed over the chunk's rows,
        with ``"n"`` (the rows that count) and ``"loglik"`` (their observed-data log-likelihood at ``params``). Every
        entry adds over chunks. Must not hold the ``pm.Model`` (it is sent to cluster workers).
    from_stats(stats, params) -> params : the M-step (the MAP M-step when built with priors) from summed
        statistics; ``params`` is the current value, needed by ECM blocks (the means given the covariance).
    expected_loglik(stats, params) -> float : the expected complete-data log-likelihood Q(theta) = <eta(theta), s>
        - n A(theta), up to terms free of ``params``; linear in the statistics. Incremental EM evaluates Neal and
        Hinton's free energy with it.
    allows_missing : whether a row may hold NaN (a missing entry the model integrates out).

    A model's in-memory EM is the one-chunk case: ``step(p) = from_stats(chunk_stats(p, prepare(X)), p)``.
    """

    prepare: Callable
    chunk_stats: Callable
    from_stats: Callable
    expected_loglik: Callable
    allows_missing: bool = False


@dataclass(frozen=True)
class EMMath:
    """Hand-derived EM steps of one model, reading data and priors from the ``pm.Model``.

    init(rng) -> params : a start computed from the data.
    step(params) -> params : one E-step followed by one M-step (the MAP M-step when built with priors).
    loglik(params) -> float : the observed-data log-likelihood, constants included (the PyMC model's own value).
    log_prior(params) -> float or None : the log prior density without Jacobian; present iff built with priors.
    check_init(params) -> params : validates and normalises user-supplied initial values (raises ValueError).
    to_model(params) -> dict : the model's free-variable values for ``params`` (identity when None).
    extras(params) -> dict : final-step by-products (responsibilities, imputed data, ...), optional.
    order(params) -> params : the identifiable labelling of the components, optional.
    exact : True when each step maximises the expected complete-data objective exactly (or at least never lowers
        it), so a drop of the objective beyond round-off is a bug (raise). False for steps that are deliberately
        approximate (a covariance ridge): drops are then counted in ``info["drops"]`` instead.
    scale : the size of the terms summed into the objective (the sum of their absolute values, or a bound on it),
        used to tell round-off from a real drop; a number, or a function of the parameters evaluated only when the
        objective seems to drop. None: the objective itself.
    sufficient : the same E- and M-step as a :class:`SufficientEM` (chunk statistics and the map from statistics
        to parameters), for the models whose E-step is a sum over rows; ``step`` is then its one-chunk case.
    """

    init: Callable
    step: Callable
    loglik: Callable
    log_prior: Callable | None = None
    check_init: Callable | None = None
    to_model: Callable | None = None
    extras: Callable | None = None
    order: Callable | None = None
    exact: bool = True
    scale: float | Callable | None = None
    sufficient: SufficientEM | None = None

    def objective(self, params) -> float:
        value = self.loglik(params)
        if self.log_prior is not None:
            value += self.log_prior(params)
        return float(value)


@dataclass(frozen=True)
class VEMMath:
    """Hand-derived variational-EM updates of one model, reading data and priors from the ``pm.Model``.

    init(rng) -> state : the starting variational state (any object the other functions understand).
    step(state) -> state : one full sweep (local E-step to convergence, then the global M-step); must not lower
        the ELBO.
    elbo(state) -> float : the evidence lower bound at ``state``, constants included.
    to_result(state) -> dict : point estimates keyed by the PyMC variable names (constrained space).
    sd(state) -> dict : their approximate posterior standard deviations under q, optional.
    extras(state) -> dict : by-products for ``result.info`` (variational parameters, updated hyperparameters).
    n_units : number of exchangeable units (documents) the online variant samples mini-batches from.
    online_step(state, batch, rho) -> (state, elbo_estimate) : local E-step on the unit indices ``batch``, then the
        global parameters moved by step size ``rho`` toward their estimate from the batch; optional.
    finish(state) -> state : after the online passes, the local E-step for every unit with the final global
        parameters (so ``to_result`` reports every unit under the same topics); optional.
    loglik(params) -> float : the observed-data log-likelihood at ``to_result``'s point, computed by the model's
        own math (its tests tie it to the PyMC graph); optional. Without it the driver compiles the PyMC graph,
        which on a corpus of thousands of words takes longer than the fit.
    """

    init: Callable
    step: Callable
    elbo: Callable
    to_result: Callable
    sd: Callable | None = None
    extras: Callable | None = None
    n_units: int | None = None
    online_step: Callable | None = None
    finish: Callable | None = None
    loglik: Callable | None = None


@dataclass(frozen=True)
class ModelHooks:
    """Model-specific pieces of one built ``pm.Model``, all optional but the name.

    name : the model's registered name (``"normal"``, ``"poisson"``, ...).
    options : the options ``build`` was called with (``k``, priors, ...), for reports.
    em_math : ``em_math(prior: bool, **em_options) -> EMMath``, the hand-derived EM steps reading data and priors
        from the model; ``em_options`` are the extra keyword arguments given to :func:`inference.em` (for example
        ``reg_covar`` for the Gaussian mixture). A model whose EM takes no options ignores none: unknown options are
        a TypeError naming them.
    vem_math : ``vem_math(**options) -> VEMMath``, the hand-derived variational-EM updates (``inference.vem``);
        ``options`` are the extra keyword arguments given to :func:`inference.vem.vem` (``update_alpha`` for LDA).
    init : ``init(rng) -> dict`` of constrained free-variable values computed from the data (shared by EM and the
        optimisers, so both can start from the same point).
    mle_check : ``mle_check()`` raises when the likelihood has no (unique) maximum, before MLE or EM without priors
        start (for example: separated classes in a logistic regression).
    align : ``align(result, truth) -> result``, relabels mixture components (to ``truth`` when given).
    public : the variable names a comparison shows (default: every free variable and deterministic; ``[]``: none).
    skip : estimators left out of this model's default list, each with the reason (``zoo list`` shows it).
    latent_draws : ``latent_draws(draws: dict, rng) -> dict`` of extra draws of quantities the declaration
        integrates out (imputed entries, states), one per posterior draw; added to the draws of VI and NUTS.
    """

    name: str
    options: dict = field(default_factory=dict)
    em_math: Callable | None = None
    vem_math: Callable | None = None
    init: Callable | None = None
    mle_check: Callable | None = None
    align: Callable | None = None
    public: list | None = None
    skip: dict = field(default_factory=dict)
    latent_draws: Callable | None = None


_HOOKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def attach(model, hooks: ModelHooks):
    """Attach ``hooks`` to ``model`` (kept as long as the model lives) and return the model."""
    if not isinstance(hooks, ModelHooks):
        raise TypeError(f"hooks: expected a ModelHooks, got {type(hooks).__name__}")
    _HOOKS[model] = hooks
    return model


def hooks_for(model) -> ModelHooks | None:
    """The hooks attached to ``model``, or None (a model built by hand, or a copy)."""
    try:
        return _HOOKS.get(model)
    except TypeError:  # not weak-referenceable: not a pm.Model at all
        return None


@dataclass(frozen=True)
class Example:
    """A data set for a model: the data, the options for ``build``, and the truth when the data were simulated.

    ``build(*example.args, **example.build_kwargs)`` builds the model on it. ``extra`` holds what a comparison may
    use besides (held-out rows, the complete data behind missing entries, ...).
    """

    data: object
    build_kwargs: dict = field(default_factory=dict)
    truth: dict | None = None
    source: str = "simulated"
    extra: dict = field(default_factory=dict)

    @property
    def args(self) -> tuple:
        """Positional arguments of the model's ``build``."""
        return self.data if isinstance(self.data, tuple) else (self.data,)

    @property
    def n(self) -> int:
        first = self.data[0] if isinstance(self.data, tuple) else self.data
        return int(first.shape[0]) if hasattr(first, "shape") else len(first)


@dataclass(frozen=True)
class Option:
    """One option of a model, shared by ``build``/``example`` and the command line (``--name``).

    type : the Python type of the value (``int``, ``float``, ``str``, ``bool``; ``list`` for comma-separated names).
    applies : ``"both"``, ``"data"`` (only with user data) or ``"example"`` (only on built-in examples).
    """

    name: str
    type: type = str
    help: str = ""
    choices: tuple | None = None
    applies: str = "both"


# The shapes of data the application knows how to read from a file for a model:
#   vector      one numeric column (--column)               -> 1-D float array (the model checks integers etc.)
#   matrix      several numeric columns (--columns)          -> (n, D) float array (1-D when D = 1)
#   incomplete  several numeric columns, empty cells missing -> (n, D) float array with NaN
#   design      outcome and features (--target, --features)  -> (X, y), y in {0, 1}
#   documents   a text file (one document a line) or a document-term CSV -> sparse counts
DATA_KINDS = ("vector", "matrix", "incomplete", "design", "documents")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the application and the simulation studies need to know about a model, declared once.

    build(data..., **options) -> pm.Model : the PyMC declaration, hooks attached.
    example(**options) -> Example : a built-in data set (``options`` among ``options`` below, plus ``seed``).
    simulate(params, n, seed, **options) -> data : draws from the declaration itself with ``params`` fixed, in the
        form ``build`` takes (a tuple for several positional arguments).
    data_kind : how a file's columns become the data (see ``DATA_KINDS``); None when the model reads no files.
    options : the model's options (``k``, ``standardize``, ``example``, ...).
    params : the parameters a comparison shows, in order.
    check_plan(example, estimators) : raises ValueError before any work when the plan cannot succeed.
    metrics(example, comparison) -> {estimator: {metric: value}} : extra per-estimator numbers (held-out accuracy).
    notes(example, comparison) -> [str] : sentences the reader should see under the tables.
    min_n(options) -> int : the smallest sample size the model accepts (simulation studies).
    density(params, grid) -> values : the fitted density (or mass function) of one-dimensional data, for figures.
    not_default : estimators left out of the default list on some data, each with the reason (``zoo list``).
    offers_vem : the model supplies variational-EM math (``ModelHooks.vem_math``), so ``vem`` runs on it.
    test_cases : named example options the generic tests run every estimator on (default: the default example).
    swap_data(model, data) -> model or None : ``model`` (built by ``build``) holding ``data`` instead, in the form
        ``build`` takes, through ``pm.set_data``; indistinguishable from ``build(data, **options)`` with the
        model's options, while every compiled function is kept. None (the hook, or its answer): build again.
        Simulation studies swap each replicate's data, at every sample size, into one model.
    """

    name: str
    description: str
    build: Callable
    example: Callable
    simulate: Callable
    data_kind: str | None = None
    options: tuple = ()
    params: tuple = ()
    check_plan: Callable | None = None
    metrics: Callable | None = None
    metrics_title: str = "metrics:"
    notes: Callable | None = None
    min_n: Callable | None = None
    density: Callable | None = None
    not_default: dict = field(default_factory=dict)
    offers_vem: bool = False
    test_cases: dict = field(default_factory=lambda: {"default": {}})
    swap_data: Callable | None = None

    def __post_init__(self):
        if self.data_kind is not None and self.data_kind not in DATA_KINDS:
            raise ValueError(f"data_kind: expected one of {', '.join(DATA_KINDS)} or None, got {self.data_kind!r}")
        for opt in self.options:
            if not isinstance(opt, Option):
                raise TypeError(f"options: expected Option entries, got {type(opt).__name__}")

    def option(self, name: str) -> Option | None:
        return next((o for o in self.options if o.name == name), None)

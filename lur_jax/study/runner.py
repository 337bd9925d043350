"""One model's run in a study: a method's settings become an optimiser and a step,
:func:`lur_jax.training.loop.fit` runs it, and the model cache keeps the outcome.

- :func:`from_scratch` trains on a set from the shared init (the original
  model on all of D, ``retrain`` on D_r).
- :func:`method_row` runs a method from the original model and measures it.
"""

from __future__ import annotations

import hashlib
import time
from typing import NamedTuple

import jax
import jax.extend.core as jax_core
import numpy as np
import optax

from lur_jax import models
from lur_jax.core import methods, saliency, streams, train
from lur_jax.study import config as config_lib
from lur_jax.training import cache as cache_lib, checkpoint, loop, sharding, steppers


def initial_variables(model: models.Model, mesh, seed: int) -> train.Variables:
  """The init shared by the original model and retrain (they differ only in data):
  ``{"params": ..., "model_state": ...}`` of ``model`` from ``seed``. On a sharded mesh
  the parameters are created already sharded (a jitted init with ``out_shardings``): no
  device ever holds them whole."""
  key = streams.key(seed, streams.INIT)
  init = model.init
  if not sharding.is_data_parallel(mesh):
    init = jax.jit(init, out_shardings=sharding.model_shardings(model, mesh))
  return train.Variables(params=init(key), model_state=model.init_state(key))


def _state_update(model: models.Model, model_state):
  """Running statistics follow the retain batches; ``None`` without BatchNorm."""
  if not jax.tree.leaves(model_state):
    return None
  return lambda params, state, batch: models.update_running_stats(
      state, model.batch_moments(params, batch["x"]))


class Recipe(NamedTuple):
  """A method resolved for one run: the one place a method's step is built from.

  Attributes:
    name: the method's name.
    method: its :class:`~lur_jax.Method`.
    settings: its resolved :class:`~lur_jax.Settings`.
    forget_batch_size: the forget batches' size (0 without a forget set).
    total_steps: epochs × steps per epoch (the l1 schedule's length).
    iterate: the set an epoch walks, ``settings.iterate`` or the method's own.
  """

  name: str
  method: methods.Method
  settings: methods.Settings
  forget_batch_size: int
  total_steps: int
  iterate: str = "retain"

  def optimizer(self, settings=None) -> optax.GradientTransformation:
    """The configured optimiser and the method's addition (``settings``: e.g. a
    member's own hyperparameters; default the recipe's)."""
    settings = self.settings if settings is None else settings
    tx = train.optimizer(settings, self.total_steps)
    wrap = self.method.wrap_tx
    return tx if wrap is None else wrap(settings, tx, self.total_steps)


def context(exp, model_state=None) -> methods.Context:
  """The methods' :class:`~lur_jax.Context` for ``exp``'s model and losses: a plain step
  of the global batch (jitted with shardings by XLA, or one ensemble member)."""
  return methods.Context(exp.model.apply, exp.splits.num_classes, exp.model.init,
                         state_update=_state_update(exp.model, model_state),
                         objectives=exp.objectives)


def recipe(name: str, settings: methods.Settings, retain_idx, forget_idx) -> Recipe:
  """Method ``name`` with ``settings`` on these sets (all members of an ensemble share
  the sizes)."""
  method = methods.METHODS[name]
  forget_bs = settings.get("forget_batch_size", settings.batch_size) if len(forget_idx) else 0
  iterate = settings.get("iterate", method.iterate) if len(forget_idx) else "retain"
  total = settings.epochs * loop.steps_per_epoch(iterate, retain_idx, forget_idx,
                                                 settings.batch_size, forget_bs)
  return Recipe(name, method, settings, forget_bs, total, iterate)


def make_step(exp, p: Recipe, tx, state: train.TrainState, batches: tuple, reference=None,
              reads: bool | None = None):
  """The method's step on ``exp``'s model and losses, and the state it starts from.

  Where the task's losses can take a reference model (NPO's; ``Objectives.needs_reference``)
  and this method's step reads it, the state carries ``reference`` (the parameters the run
  starts from, before a method's ``prepare``; default ``state.params``) as
  ``state.reference``, an argument of the compiled program sharded as the parameters
  (never a constant folded into it); a step that does not read it (traced once,
  abstractly, on ``batches``: the retain and forget batches' shapes, unless ``reads``
  already says) carries nothing.
  """
  ctx = context(exp, state.model_state)
  if not exp.objectives.needs_reference:
    return p.method.make_step(ctx, p.settings, tx), state

  def step(state, retain_batch, forget_batch):
    with_reference = ctx._replace(reference=state.reference)
    return p.method.make_step(with_reference, p.settings, tx)(state, retain_batch, forget_batch)
  state = state._replace(reference=state.params if reference is None else reference)
  if _reads_reference(step, state, batches) if reads is None else reads:
    return step, state
  return p.method.make_step(ctx, p.settings, tx), state._replace(reference=None)


def _reads_reference(step, state: train.TrainState, batches: tuple) -> bool:
  """Whether any operation of ``step`` reads ``state.reference`` (a returned state holds
  it unchanged, which is not a read)."""
  def without(reference, rest, retain, forget):
    new, metrics = step(rest._replace(reference=reference), retain, forget)
    return new._replace(reference=None), metrics
  shapes = lambda tree: jax.tree.map(lambda a: jax.ShapeDtypeStruct(np.shape(a), a.dtype), tree)
  jaxpr = jax.make_jaxpr(without)(shapes(state.reference), shapes(state._replace(reference=None)),
                                  *batches).jaxpr
  reference = set(jaxpr.invars[:len(jax.tree.leaves(state.reference))])
  read = [v for eqn in jaxpr.eqns for v in eqn.invars] + list(jaxpr.outvars)
  return any(v in reference for v in read if isinstance(v, jax_core.Var))


def batch_shapes(x, y, p: Recipe) -> tuple:
  """The shapes of one step's ``(retain, forget)`` batches of ``p`` on examples ``x, y``."""
  def batch(size):
    return {"x": jax.ShapeDtypeStruct((size, *x.shape[1:]), x.dtype),
            "y": jax.ShapeDtypeStruct((size, *y.shape[1:]), y.dtype)}
  return batch(p.settings.batch_size), batch(p.forget_batch_size)


def _prepare(method: methods.Method, ctx, settings, tx, params, forget_xy, seed):
  """The method's one-off preparation (saliency, trimming): ``(params, tx, seconds)``,
  its compilation included (it runs once, jitted on first use)."""
  start = time.perf_counter()
  if method.prepare is not None:
    params, mask = method.prepare(ctx, settings, params, forget_xy,
                                  streams.key(seed, streams.PREPARE))
    if mask is not None:
      tx = optax.chain(tx, saliency.masked_updates(mask))
    jax.block_until_ready(params)
  return params, tx, time.perf_counter() - start


def run_method(exp, p: Recipe, variables, train_set, retain_idx, forget_idx, *, seed: int,
               desc: str, progress: bool, checkpoint_dir: str | None = None,
               log=None) -> loop.Run:
  """Runs a method (its recipe) from ``variables`` on ``train_set``; resumes from
  ``checkpoint_dir``.

  On a mesh with ``fsdp`` or ``tensor`` > 1 the parameters and optimiser
  state are sharded (:mod:`lur_jax.training.sharding`); otherwise replicated. The
  batch is split over ``data`` × ``fsdp`` either way. Saliency and trimming (a method's ``prepare``)
  count as unlearning time.

  Args:
    exp: a prepared :class:`~lur_jax.Experiment`: its model, losses, mesh, and the
      ``data.augment`` and ``checkpoint`` sections of its config.
    p: the method and its settings (:func:`recipe`).
    variables: ``{"params", "model_state"}`` to start from.
    train_set: the examples the indices point into (:class:`~lur_jax.Dataset`).
    retain_idx, forget_idx: the sets (``forget_idx`` empty for plain training).
    seed: the run's random stream (init key of the state, data order, prepare).
    desc: the progress bar's label.
    progress: show it.
    checkpoint_dir: where the run's checkpoints go (``None``: none).
    log: ``str -> None`` for status lines.

  Returns:
    A :class:`~lur_jax.training.loop.Run` (one model).
  """
  cfg = exp.config
  model_state = variables["model_state"]
  x, y = train_set.x, train_set.y
  params, tx, prepare_seconds = _prepare(
      p.method, context(exp), p.settings, p.optimizer(), variables["params"],
      (x[forget_idx], y[forget_idx]), seed)
  step_fn, state = make_step(exp, p, tx, train.init_state(params, tx, jax.random.key(seed),
                                                           model_state), batch_shapes(x, y, p),
                             reference=variables["params"])
  shardings = steppers.shardings_of(state, exp.model, exp.mesh)
  options = config_lib.checkpoint_options(cfg)
  checkpoints = None
  if checkpoint_dir is not None:
    checkpoints = checkpoint.RunCheckpoints(checkpoint_dir, options["keep"], warn=log)
  try:
    result = loop.fit(step_fn, state, x, y, retain_idx, forget_idx, mesh=exp.mesh,
                      epochs=p.settings.epochs, batch_size=p.settings.batch_size,
                      forget_batch_size=p.forget_batch_size, iterate=p.iterate,
                      seed=seed, desc=desc, progress=progress,
                      augment=cfg.data.get("augment", False), shardings=shardings,
                      checkpoints=checkpoints, every=options["every"] if checkpoints else 0,
                      log=log)
  finally:
    if checkpoints is not None:
      checkpoints.close()
  return result._replace(seconds=result.seconds + prepare_seconds)


def _common_key(cfg) -> dict:
  return {"seed": cfg.seed, "data": cfg.data.to_dict(), "model": cfg.model.to_dict(),
          "train": cfg.train.to_dict()}


def run_key(exp) -> dict:
  """What determines every run of ``exp`` but a method's own settings: seed,
  data, model, train recipe, forget set, evaluation and the task's sections
  (the part of a cache fingerprint that every method shares)."""
  cfg = exp.config
  return {**_common_key(cfg), "forget": cfg.forget.to_dict(), **exp.task.cache_key(cfg),
          "eval": cfg.eval.to_dict()}


def _facts(result: loop.Run) -> dict:
  """What a results row and the cache keep of a run."""
  return {"seconds": result.seconds, "compile_seconds": result.compile_seconds,
          "steps": result.steps, "diverged_at": result.first_divergence()}


def from_scratch(exp, cache: cache_lib.ModelCache, desc: str, retain_idx, log, progress):
  """Trains on ``retain_idx`` from the shared init with the ``train`` recipe, or
  restores that model from the cache.

  The fingerprint covers everything that determines the model (seed, data,
  model, recipe, the task's own sections, the retained set). A run that
  diverged is not kept: its checkpoints stay, and a rerun resumes it.

  A model the task is given (:attr:`lur_jax.tasks.base.Task.given`: a pretrained
  checkpoint) is returned as it is, with no seconds and no steps.

  Returns:
    ``(variables, facts, reused)``; ``facts``: seconds, compile_seconds, steps and
    diverged_at (``None`` unless it diverged).
  """
  cfg = exp.config
  given = exp.task.given(exp, desc) if exp.task.given is not None else None
  if given is not None:
    log(f"{desc}: the given model (not trained)")
    return given, {"seconds": 0.0, "compile_seconds": 0.0, "steps": 0, "diverged_at": None}, True
  key = {**_common_key(cfg), **exp.task.cache_key(cfg),
         "retain": hashlib.sha256(np.asarray(retain_idx).tobytes()).hexdigest()}

  def make(checkpoints) -> cache_lib.Trained:
    start = (initial_variables(exp.model, exp.mesh, cfg.seed) if exp.task.initial is None
             else exp.task.initial(exp, cache, log, progress))
    retain, none = np.asarray(retain_idx), np.zeros(0, np.int64)
    result = run_method(exp, recipe("retrain", exp.settings["retrain"], retain, none), start,
                        exp.splits.train, retain, none, seed=streams.derive_seed(cfg.seed, desc),
                        desc=desc, progress=progress, checkpoint_dir=checkpoints, log=log)
    finished = result.first_divergence() is None
    return cache_lib.Trained(train.variables_of(result.state), _facts(result), finished, finished)

  shared = len(retain_idx) == len(exp.splits.train)  # the original: one for every variant
  cached, reused = cache.memoised(desc, key, make, jax.eval_shape(
      lambda: initial_variables(exp.model, exp.mesh, cfg.seed)), shared=shared)
  if reused:
    log(f"reusing the {desc} model from {cached.directory}")
  facts = {k: cached.meta.get(k) for k in ("seconds", "compile_seconds", "steps",
                                           "diverged_at")}
  return cached.variables, facts, reused


def _measured_row(facts: dict, variables, measure, name, log,
                  reused: bool) -> tuple[dict, int | None]:
  """The results row of a finished run (``facts`` from :func:`_facts`); ``(row, diverged_at)``."""
  row = {"seconds": facts["seconds"], "compile_seconds": facts["compile_seconds"],
         "steps": facts["steps"], "reused": reused,
         "params_checksum": checkpoint.params_checksum(variables)}
  diverged_at = facts["diverged_at"]
  if diverged_at is None:
    try:
      log(f"{name}: scoring")  # evaluation can take longer than training on small runs
      measured = measure(variables, name)
      row = {**measured, **row}
      log(f"{name}: " + ", ".join(f"{k} {v:.2f}" for k, v in measured.items()
                                  if isinstance(v, float)) + f", {facts['seconds']:.2f} s")
    except FloatingPointError:  # finite params whose logits overflow
      diverged_at = facts["steps"]
  if diverged_at is not None:
    row.update(diverged=True, diverged_at_step=diverged_at)
    log(f"{name}: diverged (non-finite loss or gradient) at step {diverged_at}; "
        "stopped there, its last good checkpoint is kept, the other methods go on")
  return row, diverged_at


def method_row(exp, cache: cache_lib.ModelCache, name: str, original, measure, log,
               progress) -> tuple[dict, dict]:
  """Runs method ``name`` -> ``(results row, metric history)``.

  A method that finished (or diverged) in an earlier run with the same
  settings is not run again: its row comes from the cache. An interrupted
  one resumes from its checkpoints.
  """
  cfg = exp.config
  if methods.METHODS[name].from_scratch:
    variables, facts, reused = from_scratch(exp, cache, name, exp.forget.retain, log, progress)
    return _measured_row(facts, variables, measure, name, log, reused)[0], {}

  def make(checkpoints) -> cache_lib.Trained:
    retain, forget = exp.forget.retain, exp.forget.forget
    result = run_method(exp, recipe(name, exp.settings[name], retain, forget), original,
                        exp.splits.train, retain, forget, seed=streams.derive_seed(cfg.seed, name),
                        desc=name, progress=progress, checkpoint_dir=checkpoints, log=log)
    variables = train.variables_of(result.state)
    facts = _facts(result)
    row, diverged_at = _measured_row(facts, variables, measure, name, log, reused=False)
    del facts["diverged_at"]
    return cache_lib.Trained(variables, {
        "method": name, "params_checksum": row["params_checksum"], **facts, "row": row,
        "history": result.history_of()}, keep=True, finished=diverged_at is None)

  key = {**run_key(exp), "settings": dict(exp.settings[name])}
  cached, reused = cache.memoised(name, key, make)
  if reused:
    log(f"{name}: finished in an earlier run with these settings; reusing its results")
    return {**cached.meta["row"], "reused": True}, cached.meta["history"]
  return cached.meta["row"], cached.meta["history"]

"""Ensembles: M models trained or unlearned at once, one ``jax.vmap``-ped program
over a leading model axis.

Each member has its own seed (init key and data order) and its own retain
and forget sets (of one size for all members); the step is any pure method
step, vmapped. With several devices the model axis is sharded over the
mesh: each device runs its members, no communication.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lur_jax.core import saliency, streams, train
from lur_jax.study import runner
from lur_jax.training import loop, steppers


class Members(NamedTuple):
  """What makes each member its own.

  Attributes:
    seeds: ``[M]`` ints: each member's init key, data order and random stream.
    retain: ``[M, R]`` indices into the training set.
    forget: ``[M, F]`` indices (``F`` = 0: plain training, no forget set).
  """

  seeds: np.ndarray
  retain: np.ndarray
  forget: np.ndarray


def random_members(exp, models: int, name: str = "member") -> Members:
  """``models`` members, each forgetting its own random draw of the study's
  forget-set size.

  Args:
    exp: a prepared :class:`~lur_jax.Experiment`.
    models: M.
    name: seeds and sets are derived from the config's seed and this name.

  Returns:
    :class:`Members`.
  """
  rng = np.random.default_rng(streams.derive_seed(exp.config.seed, f"{name}-sets"))
  n, f = len(exp.splits.train), len(exp.forget.forget)
  forgets = np.stack([np.sort(rng.choice(n, f, replace=False)) for _ in range(models)])
  retains = np.stack([np.setdiff1d(np.arange(n), fs) for fs in forgets])
  seeds = np.array([streams.derive_seed(exp.config.seed, f"{name}{i}") for i in range(models)])
  return Members(seeds, retains, forgets)


def stack(trees):
  """A list of same-structure trees -> one tree with a leading model axis.

  Args:
    trees: M trees of arrays.

  Returns:
    One tree of numpy arrays, each ``[M, ...]``.
  """
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(v) for v in leaves]), *trees)


def fresh(model, seeds):
  """Freshly initialised variables of ``model``, one per seed, stacked.

  Args:
    model: a :class:`~lur_jax.Model` without BatchNorm statistics.
    seeds: ``[M]`` ints.

  Returns:
    ``{"params", "model_state"}`` with a leading member axis.
  """
  return stack([train.Variables(params=model.init(streams.key(int(s), streams.INIT)),
                                model_state={}) for s in seeds])


def member(tree, m: int):
  """Member ``m`` of a stacked tree.

  Args:
    tree: leaves with a leading member axis.
    m: the member's index.

  Returns:
    The member's tree.
  """
  return steppers.member(tree, m)


def _stack_keys(keys):
  return jax.random.wrap_key_data(jnp.stack([jax.random.key_data(k) for k in keys]))


def _check(members: Members) -> None:
  m = len(members.seeds)
  if m < 2:
    raise ValueError(f"an ensemble of {m} models; allowed: at least 2")
  if np.shape(members.retain)[0] != m or np.shape(members.forget)[0] != m or (
      np.ndim(members.retain) != 2 or np.ndim(members.forget) != 2):
    raise ValueError(f"members: {m} seeds, retain {np.shape(members.retain)}, forget "
                     f"{np.shape(members.forget)}; allowed: [M] seeds and [M, size] index sets")


def fit(step_fn, states, x, y, members: Members, *, mesh, epochs: int, batch_size: int,
        forget_batch_size: int, iterate: str, desc: str = "ensemble", progress: bool = True,
        augment: bool = False, chunk: int = 0, checkpoints=None, every: int = 0,
        log=None) -> loop.Run:
  """Runs ``epochs`` epochs of ``step_fn`` for every member at once.

  The loop is :func:`lur_jax.training.loop.run` with a :class:`lur_jax.training.steppers.Ensemble`;
  member ``m`` walks its own sets in the order drawn from ``members.seeds[m]``,
  exactly as a run of that member alone would. ``step_fn(state,
  retain_batch, forget_batch)`` is one member's step. The member axis is sharded over the mesh's
  devices; a mesh with ``fsdp`` or ``tensor`` > 1 is refused.

  ``chunk`` members are vmapped in one call (0: all of them); the groups of
  a step run one after another through the same compiled program. Small
  chunks suit XLA:CPU with convolutions: vmapped, a convolution with one
  kernel per member becomes a grouped convolution, which it runs slower than
  one model at a time (``benchmarks/ensemble_throughput.py``).

  With ``checkpoints`` (a :class:`lur_jax.RunCheckpoints`) every member's
  state is saved every ``every`` steps and the run continues from the newest
  checkpoint, bit-identical to an uninterrupted one.

  Args:
    step_fn: one member's pure ``(state, retain_batch, forget_batch) -> (state, metrics)``.
    states: the members' starting states, stacked (:func:`stack`).
    x, y: the training set's inputs ``[N, ...]`` and labels ``[N]``.
    members: each member's seed and sets.
    mesh: a mesh whose only axis of size > 1 is ``data``.
    epochs, batch_size, forget_batch_size, iterate: as in :func:`lur_jax.fit`.
    desc: the progress bar's label.
    progress: show it.
    augment: random crop and flip on both batches.
    chunk: members per call (0: all).
    checkpoints: a :class:`~lur_jax.RunCheckpoints`, or ``None``.
    every: save every this many steps (0: never).
    log: ``str -> None`` for the resume line.

  Returns:
    A :class:`lur_jax.training.loop.Run` (states with a member axis); seconds
    exclude compilation and checkpoint writes. A member's metrics are NaN from
    where it diverged; the run stops early only when every member has.
  """
  _check(members)
  stepper = steppers.Ensemble(step_fn, mesh, len(members.seeds), chunk, augment)
  steps = loop.steps_per_epoch(iterate, members.retain[0], members.forget[0], batch_size,
                               forget_batch_size)
  orders = [loop.DataOrder(int(s), r, f, batch_size, forget_batch_size, steps)
            for s, r, f in zip(members.seeds, members.retain, members.forget)]
  return loop.run(stepper, states, x, y, orders, steps=steps, epochs=epochs, desc=desc,
                  progress=progress, checkpoints=checkpoints, every=every, log=log)


def _checked_hparams(hparams: dict, settings, models: int) -> dict:
  """``{key: float32 [models]}``; ValueError naming a key the method does not
  have as a number, or values that are not one finite number > 0 per member."""
  numeric = sorted(k for k, v in settings.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool))
  out = {}
  for key, values in hparams.items():
    if key not in numeric:
      raise ValueError(f"hparams: {key!r} is not a numeric setting of {settings.name}; "
                       f"allowed: {', '.join(numeric)}")
    values = np.asarray(values, np.float32)
    if values.shape != (models,) or not np.all(np.isfinite(values) & (values > 0)):
      raise ValueError(f"hparams[{key!r}]: {values.shape} values; allowed: {models} finite "
                       "numbers > 0, one per member")
    out[key] = values
  return out


def unlearn(exp, name: str, variables, members: Members, *, settings=None, hparams=None,
            wrap=None, progress: bool = True, desc: str | None = None, chunk: int = 0,
            checkpoints=None, every: int = 0, log=None) -> loop.Run:
  """Runs method ``name`` of a prepared study for every member at once.

  Args:
    exp: a prepared :class:`lur_jax.Experiment`.
    name: a key of :data:`lur_jax.METHODS`.
    variables: ``{"params", "model_state"}`` with a leading model axis: where
      each member starts (the originals; a fresh init for ``retrain``).
    members: each member's seed and sets.
    settings: the method's :class:`~lur_jax.Settings` (default: the study's,
      ``exp.settings[name]``).
    hparams: optional ``{key: [M] numbers}``, each member's own value of
      continuous settings (``lr``, ``forget_weight``, ``inner_lr``, ``alpha``,
      ...) laid over ``settings``; they ride in the members' state, so one
      compiled program runs every setting of a sweep. Settings that change
      shapes or the program (epochs, ``inner_steps``, sparsity) cannot vary.
    wrap: optional ``(step, ctx, settings) -> step`` around each member's step
      (to record more metrics, say).
    chunk: members vmapped per call (0: all), see :func:`fit`.
    checkpoints, every, log: resumable state, see :func:`fit`.

  Returns:
    A :class:`lur_jax.training.loop.Run` (states with a member axis).
  """
  p = runner.recipe(name, exp.settings[name] if settings is None else settings,
                  members.retain[0], members.forget[0])
  method, settings = p.method, p.settings
  if jax.tree.leaves(variables["model_state"]):
    raise ValueError(f"{name}: ensembles of models with BatchNorm statistics are not "
                     "supported yet; allowed: models without BatchNorm")
  hparams = _checked_hparams(hparams or {}, settings, len(members.seeds))
  tx = p.optimizer()
  ctx = runner.context(exp)
  keys = [jax.random.key(int(s)) for s in members.seeds]
  params, mask = variables["params"], None
  if method.prepare is not None:
    x, y = exp.splits.train.x, exp.splits.train.y
    params, mask = jax.vmap(lambda p, fx, fy, k: method.prepare(ctx, settings, p, (fx, fy), k))(
        params, jnp.asarray(x[members.forget]), jnp.asarray(y[members.forget]),
        jax.vmap(lambda k: jax.random.fold_in(k, streams.PREPARE))(_stack_keys(keys)))
  member_tx = lambda m: tx if m is None else optax.chain(tx, saliency.masked_updates(m))
  states = stack([train.init_state(member(params, i),
                                   member_tx(None if mask is None else member(mask, i)), k)
                  ._replace(rng=jax.random.key_data(k), model_state={})
                  for i, k in enumerate(keys)])
  states = states._replace(rng=jax.random.wrap_key_data(states.rng))
  step = _member_step(p, ctx, mask is not None, hparams, wrap)
  if hparams:  # each member's own values ride in its optimiser state (its mask already does)
    states = states._replace(opt_state=(states.opt_state, {"hparams": hparams}))
  return fit(step, states, exp.splits.train.x, exp.splits.train.y, members, mesh=exp.mesh,
             epochs=settings.epochs, batch_size=settings.batch_size,
             forget_batch_size=p.forget_batch_size, iterate=p.iterate, desc=desc or name,
             progress=progress,
             augment=exp.config.data.get("augment", False), chunk=chunk,
             checkpoints=checkpoints, every=every, log=log)


def _member_step(p: runner.Recipe, ctx, masked: bool, hparams: dict, wrap):
  """One member's step; its update mask (if any) is the last part of its optimiser state,
  its hyperparameters (if any) the second half of the state."""
  def build(extra):
    s = p.settings.replace(**extra.get("hparams", {}))
    tx = p.optimizer(s)
    if masked:
      tx = optax.chain(tx, saliency.masked_updates())
    step = p.method.make_step(ctx, s, tx)
    return step if wrap is None else wrap(step, ctx, s)

  if not hparams:
    return build({})

  def step(state, retain_batch, forget_batch):
    inner, extra = state.opt_state
    new, metrics = build(extra)(state._replace(opt_state=inner), retain_batch, forget_batch)
    return new._replace(opt_state=(new.opt_state, extra)), metrics
  return step

"""Ensembles: M models trained or unlearned at once, one ``jax.vmap``-ped program
over a leading model axis.

Each member has its own seed (init key and data order) and its own retain
and forget sets (of one size for all members); the step is any pure method
step, vmapped. With several devices the model axis is sharded over the
mesh: each device runs its members, no communication.
"""

from __future__ import annotations

import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from lur_jax import config as config_lib, data, loop, methods, parallel, saliency, train


class Members(NamedTuple):
  """What makes each member its own."""

  seeds: np.ndarray  # [M] ints: the init key and the data order
  retain: np.ndarray  # [M, R] indices into the training set
  forget: np.ndarray  # [M, F]


class EnsembleResult(NamedTuple):
  states: train.TrainState  # leaves with a leading model axis (host copies)
  seconds: float
  compile_seconds: float
  steps: int
  history: dict  # metric -> [steps, M]
  diverged_at: np.ndarray  # [M]: the first non-finite step, -1 for none


def random_members(exp, models: int, name: str = "member") -> Members:
  """``models`` members, each forgetting its own random draw of the study's
  forget-set size; seeds derived from the config's seed and ``name``."""
  rng = np.random.default_rng(loop.derive_seed(exp.config.seed, f"{name}-sets"))
  n, f = len(exp.splits.train), len(exp.forget.forget)
  forgets = np.stack([np.sort(rng.choice(n, f, replace=False)) for _ in range(models)])
  retains = np.stack([np.setdiff1d(np.arange(n), fs) for fs in forgets])
  seeds = np.array([loop.derive_seed(exp.config.seed, f"{name}{i}") for i in range(models)])
  return Members(seeds, retains, forgets)


def stack(trees):
  """A list of same-structure trees -> one tree with a leading model axis."""
  return jax.tree.map(lambda *leaves: np.stack([np.asarray(v) for v in leaves]), *trees)


def fresh(exp, seeds):
  """Freshly initialised variables of ``exp``'s model, one per seed, stacked."""
  return stack([{"params": exp.model.init(jax.random.fold_in(jax.random.key(int(s)), 0)),
                 "model_state": {}} for s in seeds])


def member(tree, m: int):
  """Member ``m`` of a stacked tree."""
  return jax.tree.map(lambda a: a[m], tree)


def _stack_keys(keys):
  return jax.random.wrap_key_data(jnp.stack([jax.random.key_data(k) for k in keys]))


def _check(members: Members, mesh) -> None:
  if len(members.seeds) < 2:
    raise ValueError(f"an ensemble of {len(members.seeds)} models; allowed: at least 2")
  m = len(members.seeds)
  if np.shape(members.retain)[0] != m or np.shape(members.forget)[0] != m or (
      np.ndim(members.retain) != 2 or np.ndim(members.forget) != 2):
    raise ValueError(f"members: {m} seeds, retain {np.shape(members.retain)}, forget "
                     f"{np.shape(members.forget)}; allowed: [M] seeds and [M, size] index sets")
  if len(members.seeds) % mesh.size:
    raise ValueError(f"{len(members.seeds)} models do not divide over {mesh.size} devices; "
                     f"allowed: a multiple of {mesh.size}")


def _groups(models: int, chunk: int, devices: int) -> list[slice]:
  """The members one compiled call runs at once: all (``chunk`` 0) or ``chunk``."""
  size = chunk or models
  if size % devices or models % size:
    raise ValueError(f"chunk={chunk} with {models} models on {devices} devices; allowed: 0 "
                     f"(all at once) or a divisor of {models} that is a multiple of {devices}")
  return [slice(s, s + size) for s in range(0, models, size)]


def _first_bad(history: dict, steps: int, models: int) -> np.ndarray:
  """``[models]``: each member's first step with a non-finite metric, -1 for none."""
  bad = np.zeros((steps, models), bool)
  for v in history.values():
    bad |= ~np.isfinite(v)
  return np.where(bad.any(0), bad.argmax(0), -1)


def _joined(groups):
  """The groups' states (device arrays) as one host tree with the model axis."""
  return jax.tree.map(lambda *parts: jnp.concatenate(parts) if parallel.is_key(parts[0])
                      else np.concatenate(parts), *jax.device_get(groups))


def fit(step_fn, states, x, y, members: Members, *, mesh, epochs: int, batch_size: int,
        forget_batch_size: int, iterate: str, desc: str = "ensemble", progress: bool = True,
        augment: bool = False, chunk: int = 0, checkpoints=None, every: int = 0,
        log=None) -> EnsembleResult:
  """Runs ``epochs`` epochs of ``step_fn`` for every member at once.

  Like :func:`lur_jax.loop.fit`, one compiled call per step; member ``m``
  walks its own sets in the order drawn from ``members.seeds[m]``, exactly as
  a run of that member alone would. ``step_fn(state, retain_batch,
  forget_batch)`` is one member's step (objectives built without an
  ``axis_name``).

  ``chunk`` members are vmapped in one call (0: all of them); the groups of
  a step run one after another through the same compiled program. Small
  chunks suit XLA:CPU with convolutions: vmapped, a convolution with one
  kernel per member becomes a grouped convolution, which it runs slower than
  one model at a time (``benchmarks/ensemble_throughput.py``).

  With ``checkpoints`` (a :class:`lur_jax.RunCheckpoints`) every member's
  state is saved every ``every`` steps and the run continues from the newest
  checkpoint, bit-identical to an uninterrupted one.

  Returns:
    An :class:`EnsembleResult` (history and divergence of the steps run in
    this call); seconds exclude compilation and checkpoint writes.
  """
  _check(members, mesh)
  groups = _groups(len(members.seeds), chunk, mesh.size)
  data.check_finite(x)
  steps = loop.steps_per_epoch(iterate, members.retain[0], members.forget[0], batch_size,
                               forget_batch_size)
  orders = [loop.DataOrder(int(s), r, f, batch_size, forget_batch_size, steps)
            for s, r, f in zip(members.seeds, members.retain, members.forget)]
  by_member = NamedSharding(mesh, P(parallel.AXIS))
  total, position, seconds = epochs * steps, 0, 0.0
  restored = checkpoints.restore(states) if checkpoints is not None else None
  if restored is not None:
    states, meta = restored
    position, seconds = meta["position"], meta["seconds"]
    if log is not None:
      log(f"{desc}: resuming at step {position} of {total}")
  for o in orders:
    o.skip(position // steps)

  def next_epoch():
    r, f = (np.stack(sets) for sets in zip(*(o.next_epoch() for o in orders)))
    return [parallel.put((r[g], f[g]), by_member) for g in groups]

  one = loop.indexed(step_fn, augment)
  if groups[0].stop - groups[0].start == 1:  # one member per call: no vmap, no batch axis

    def group_step(state, x, y, r, f, i):
      new, metrics = one(member(state, 0), x, y, r[0], f[0], i)
      return jax.tree.map(lambda a: a[None], (new, metrics))
  else:
    group_step = jax.vmap(one, in_axes=(0, None, None, 0, 0, None))
  x, y = parallel.put((x, y), parallel.replicated(mesh))
  states = [parallel.put(member(states, g), by_member) for g in groups]
  batches = next_epoch()
  with loop.compile_timer() as compile_seconds:
    compiled = jax.jit(group_step, donate_argnums=0).lower(states[0], x, y, *batches[0],
                                                        np.int32(0)).compile()
  pending, start = [], time.perf_counter()
  for t in tqdm(range(position, total), desc=desc, disable=not progress, file=sys.stderr,
                leave=False, unit="step", initial=position, total=total):
    if t % steps == 0 and t > position:
      batches = next_epoch()
    outs = [compiled(s, x, y, r, f, np.int32(t % steps)) for s, (r, f) in zip(states, batches)]
    states = [s for s, _ in outs]
    pending.append([m for _, m in outs])
    if checkpoints is not None and every and (t + 1) % every == 0 and t + 1 < total:
      seconds += time.perf_counter() - start
      checkpoints.save(t + 1, _joined(states), {"position": t + 1, "seconds": seconds})
      start = time.perf_counter()
  jax.block_until_ready(states)
  seconds += time.perf_counter() - start
  history = {}
  for step_metrics in jax.device_get(pending):
    for key in step_metrics[0]:
      history.setdefault(key, []).append(np.concatenate([m[key] for m in step_metrics]))
  history = {k: np.stack(v) for k, v in history.items()}
  diverged = _first_bad(history, total - position, len(members.seeds))
  return EnsembleResult(_joined(states), seconds, compile_seconds[0], total, history,
                        np.where(diverged >= 0, diverged + position, -1))


class _Settings(dict):
  """A method's settings as attributes, where values may be traced (a sweep's
  per-member hyperparameters)."""

  def __getattr__(self, key):
    try:
      return self[key]
    except KeyError:
      raise AttributeError(key) from None


def _method_tx(method, settings):
  tx = train.optimizer(settings)
  return tx if method.wrap_tx is None else method.wrap_tx(settings, tx)


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


def unlearn(exp, name: str, variables, members: Members, *, hparams=None, wrap=None,
            progress: bool = True, desc: str | None = None, chunk: int = 0,
            checkpoints=None, every: int = 0, log=None) -> EnsembleResult:
  """Runs method ``name`` of a prepared study for every member at once.

  Args:
    exp: a prepared :class:`lur_jax.Experiment` (its config gives the method's settings).
    name: a key of :data:`lur_jax.METHODS`.
    variables: ``{"params", "model_state"}`` with a leading model axis: where
      each member starts (the originals; a fresh init for ``retrain``).
    members: each member's seed and sets.
    hparams: optional ``{key: [M] numbers}``, each member's own value of
      continuous settings (``lr``, ``forget_weight``, ``inner_lr``, ``alpha``,
      ...) laid over the config's; they ride in the members' state, so one
      compiled program runs every setting of a sweep. Settings that change
      shapes or the program (epochs, ``inner_steps``, sparsity) cannot vary.
    wrap: optional ``(step, ctx, settings) -> step`` around each member's step
      (to record more metrics, say).
    chunk: members vmapped per call (0: all), see :func:`fit`.
    checkpoints, every, log: resumable state, see :func:`fit`.

  Returns:
    An :class:`EnsembleResult`.
  """
  settings = config_lib.method_settings(exp.config, name)
  method = methods.METHODS[name]
  forget_bs = settings.get("forget_batch_size", settings.batch_size)
  settings.total_steps = settings.epochs * loop.steps_per_epoch(
      method.iterate, members.retain[0], members.forget[0], settings.batch_size, forget_bs)
  if jax.tree.leaves(variables["model_state"]):
    raise ValueError(f"{name}: ensembles of models with BatchNorm statistics are not "
                     "supported yet; allowed: models without BatchNorm")
  hparams = _checked_hparams(hparams or {}, settings, len(members.seeds))
  tx = _method_tx(method, settings)
  ctx = methods.Context(exp.model.apply, exp.splits.num_classes, exp.model.init,
                        objectives=exp.objectives)
  keys = [jax.random.key(int(s)) for s in members.seeds]
  params, mask = variables["params"], None
  if method.prepare is not None:
    x, y = exp.splits.train.x, exp.splits.train.y
    params, mask = jax.vmap(lambda p, fx, fy, k: method.prepare(ctx, settings, p, (fx, fy), k))(
        params, jnp.asarray(x[members.forget]), jnp.asarray(y[members.forget]),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(_stack_keys(keys)))
  member_tx = lambda m: tx if m is None else optax.chain(tx, saliency.masked_updates(m))
  states = stack([train.init_state(member(params, i),
                                   member_tx(None if mask is None else member(mask, i)), k)
                  ._replace(rng=jax.random.key_data(k), model_state={})
                  for i, k in enumerate(keys)])
  states = states._replace(rng=jax.random.wrap_key_data(states.rng))
  step = _member_step(method, ctx, settings, mask is not None, hparams, wrap)
  if mask is not None or hparams:  # each member's own values ride in its optimiser state
    extra = {"mask": mask} if mask is not None else {}
    states = states._replace(opt_state=(states.opt_state, {**extra, "hparams": hparams}))
  return fit(step, states, exp.splits.train.x, exp.splits.train.y, members, mesh=exp.mesh,
             epochs=settings.epochs, batch_size=settings.batch_size, forget_batch_size=forget_bs,
             iterate=method.iterate, desc=desc or name, progress=progress,
             augment=exp.config.data.get("augment", False), chunk=chunk,
             checkpoints=checkpoints, every=every, log=log)


def _member_step(method, ctx, settings, masked: bool, hparams: dict, wrap):
  """One member's step; its update mask and hyperparameters (if any) are read
  from the second half of its optimiser state."""
  def build(extra):
    s = _Settings({**settings.to_dict(), **extra.get("hparams", {})})
    tx = _method_tx(method, s)
    if "mask" in extra:
      tx = optax.chain(tx, saliency.masked_updates(extra["mask"]))
    step = method.make_step(ctx, s, tx)
    return step if wrap is None else wrap(step, ctx, s)

  if not masked and not hparams:
    return build({})

  def step(state, retain_batch, forget_batch):
    inner, extra = state.opt_state
    new, metrics = build(extra)(state._replace(opt_state=inner), retain_batch, forget_batch)
    return new._replace(opt_state=(new.opt_state, extra)), metrics
  return step

"""Datasets, the SalUn data protocol, and forget sets.

Protocol (docs/protocol.md): a fixed, seed-determined test split; 10% of each
training class held out as validation; the rest is the training set D, from
which the forget set D_f is drawn and D_r = D \\ D_f.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

FORGET_KINDS = ("random", "class", "indices", "authors")  # authors: task="tofu" only


class Dataset(NamedTuple):
  """Examples and their targets on the host.

  Attributes:
    x: ``[N, ...]`` inputs: float32 images, or int32 tokens ``[N, T]`` for a language model.
    y: what the loss is taken against: int32 ``[N]`` labels when classifying; for a
      language model, whose labels are its next tokens (``x`` shifted), a bool ``[N, T]``
      mask of the tokens that count (the answer, in TOFU).
  """

  x: np.ndarray
  y: np.ndarray

  def take(self, idx) -> Dataset:
    return Dataset(self.x[idx], self.y[idx])

  def __len__(self):
    return len(self.y)


class Splits(NamedTuple):
  """A data set split by the protocol (docs/protocol.md).

  Attributes:
    train: the training set D, from which forget sets are drawn.
    val: the validation hold-out (10% of each training class), for tuning.
    test: the test set.
    num_classes: the number of classes the model's outputs score: a language model's
      vocabulary (next-token prediction classifies over it).
  """

  train: Dataset
  val: Dataset
  test: Dataset
  num_classes: int


class ForgetSplit(NamedTuple):
  """A forget set, its retain complement and the test set used for TA.

  Attributes:
    forget: int indices of D_f into ``Splits.train``.
    retain: int indices of D_r = D \\ D_f.
    test: the evaluation set, forgotten classes removed for class-wise forgetting.
    forgotten_classes: the classes forgotten whole (empty for random forgetting).
  """

  forget: np.ndarray
  retain: np.ndarray
  test: Dataset
  forgotten_classes: tuple[int, ...]


def load_digits(seed: int, *, test_fraction: float = 0.2,
                val_fraction: float = 0.1) -> Splits:
  """scikit-learn's embedded digits (1,797 8×8 images), split by ``seed``.

  Args:
    seed: determines the test split and the validation hold-out.
    test_fraction: stratified fraction of all images kept as the test set.
    val_fraction: fraction of each training class held out as validation.

  Returns:
    :class:`Splits` with inputs scaled to [0, 1], shape ``[N, 8, 8]``.
  """
  from sklearn.datasets import load_digits as sk_digits  # pylint: disable=g-import-not-at-top
  raw = sk_digits()
  x = (raw.images / 16.0).astype(np.float32)
  y = raw.target.astype(np.int32)
  return split(Dataset(x, y), seed, test_fraction=test_fraction,
               val_fraction=val_fraction, num_classes=10)


def split(data: Dataset, seed: int, *, test_fraction: float, val_fraction: float,
          num_classes: int, test: Dataset | None = None) -> Splits:
  """Stratified test split (unless ``test`` is given), then the per-class hold-out."""
  rng = np.random.default_rng(seed)
  if test is None:
    test_idx = _per_class_sample(data.y, test_fraction, rng)
    test = data.take(test_idx)
    data = data.take(np.setdiff1d(np.arange(len(data)), test_idx))
  val_idx = _per_class_sample(data.y, val_fraction, rng)
  train_idx = np.setdiff1d(np.arange(len(data)), val_idx)
  return Splits(data.take(train_idx), data.take(val_idx), test, num_classes)


def _per_class_sample(labels, fraction, rng) -> np.ndarray:
  picked = []
  for c in np.unique(labels):
    members = np.flatnonzero(labels == c)
    picked.append(rng.choice(members, int(round(fraction * len(members))), replace=False))
  return np.sort(np.concatenate(picked))


def check_finite(x: np.ndarray, what: str = "training inputs") -> None:
  """Raises ValueError naming the first example with a NaN or infinite value."""
  x = np.asarray(x)
  if np.issubdtype(x.dtype, np.floating):
    bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if bad.any():
      raise ValueError(f"{what}: example {int(np.argmax(bad))} holds NaN or Inf "
                       f"({int(bad.sum())} such examples); allowed: finite values")


def subsample(splits: Splits, seed: int, *, train: int = 0, test: int = 0) -> Splits:
  """Keeps a seeded random ``train``/``test`` examples (0 keeps all); for smoke runs."""
  rng = np.random.default_rng(seed + 1)
  def cut(d, n):
    return d if not n or n >= len(d) else d.take(np.sort(rng.choice(len(d), n, replace=False)))
  return splits._replace(train=cut(splits.train, train), test=cut(splits.test, test))


def parse_int_list(spec, what: str) -> list[int]:
  """``"3,5"``, ``3`` or ``[3, 5]`` -> ``[3, 5]``; raises ValueError otherwise."""
  if isinstance(spec, (int, np.integer)):
    return [int(spec)]
  if isinstance(spec, (list, tuple, np.ndarray)):
    items = list(spec)
  else:
    items = [s for s in re.split(r"[,\s]+", str(spec).strip()) if s]
  try:
    return [int(s) for s in items]
  except (TypeError, ValueError):
    raise ValueError(f"{what}={spec!r}; allowed: comma-separated integers") from None


def read_indices(spec) -> list[int]:
  """Forget indices from a list, a comma-separated string, or a file path.

  A file holds integers separated by commas or whitespace (``.txt``), or a
  NumPy array (``.npy``).
  """
  if isinstance(spec, str) and not re.fullmatch(r"[\d,\s]*", spec):
    if not os.path.isfile(spec):
      raise ValueError(f"forget.indices={spec!r}: no such file; allowed: "
                       "comma-separated integers or a path to a .txt/.npy file")
    if spec.endswith(".npy"):
      return parse_int_list(np.load(spec).ravel(), f"forget.indices (file {spec})")
    with open(spec) as f:
      return parse_int_list(f.read(), f"forget.indices (file {spec})")
  return parse_int_list(spec, "forget.indices")


def make_forget_split(splits: Splits, kind: str, *, seed: int, fraction: float = 0.1,
                      classes=(), indices=()) -> ForgetSplit:
  """Draws D_f from the training set.

  Args:
    splits: the dataset splits.
    kind: ``"random"`` (``fraction`` of D, without replacement, not
      stratified), ``"class"`` (every training example of ``classes``; those
      classes are also removed from the test set) or ``"indices"`` (explicit
      indices into the training set; see :func:`read_indices`).
    seed: determines the random draw.
    fraction: for ``"random"``, in (0, 1).
    classes: for ``"class"``, comma-separated ints or a sequence.
    indices: for ``"indices"``.

  Returns:
    A :class:`ForgetSplit`.

  Raises:
    ValueError: on an empty forget set, one that is the whole training set, an
      unknown class, an out-of-range or repeated index, a bad kind or fraction.
  """
  n = len(splits.train)
  test = splits.test
  forgotten: tuple[int, ...] = ()
  if kind == "random":
    if not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
      raise ValueError(f"forget.fraction={fraction!r}; allowed: a number in (0, 1)")
    count = int(round(fraction * n))
    if count == 0:
      raise ValueError(f"forget.fraction={fraction!r} gives an empty forget set "
                       f"on {n} training examples")
    if count == n:
      raise ValueError(f"forget.fraction={fraction!r} forgets all {n} training examples")
    forget = np.sort(np.random.default_rng(seed).choice(n, count, replace=False))
  elif kind == "class":
    forgotten = tuple(parse_int_list(classes, "forget.classes"))
    present = set(np.unique(splits.train.y).tolist())
    if not forgotten:
      raise ValueError("forget.classes is empty; allowed: one or more of "
                       f"{sorted(present)}")
    unknown = [c for c in forgotten if c not in present]
    if unknown:
      raise ValueError(f"forget.classes={classes!r}: class {unknown[0]} is not in the "
                       f"dataset; allowed: {sorted(present)}")
    if len(set(forgotten)) != len(forgotten):
      raise ValueError(f"forget.classes={classes!r} repeats a class")
    if set(forgotten) == present:
      raise ValueError(f"forget.classes={classes!r} forgets every class")
    forget = np.flatnonzero(np.isin(splits.train.y, forgotten))
    test = test.take(~np.isin(test.y, forgotten))
  elif kind == "indices":
    idx = read_indices(indices)
    if not idx:
      raise ValueError("forget.indices is empty; allowed: indices in "
                       f"[0, {n - 1}]")
    bad = [i for i in idx if not 0 <= i < n]
    if bad:
      raise ValueError(f"forget.indices: index {bad[0]} is out of range; allowed: "
                       f"[0, {n - 1}]")
    if len(set(idx)) != len(idx):
      dup = next(i for i in idx if idx.count(i) > 1)
      raise ValueError(f"forget.indices: index {dup} is repeated")
    if len(idx) == n:
      raise ValueError(f"forget.indices forgets all {n} training examples")
    forget = np.sort(np.asarray(idx))
  elif kind == "authors":
    raise ValueError("forget.kind='authors' forgets TOFU authors; allowed only with "
                     "task='tofu' (configs/tofu.py)")
  else:
    raise ValueError(f"forget.kind={kind!r}; allowed: {', '.join(FORGET_KINDS)}")
  retain = np.setdiff1d(np.arange(n), forget)
  return ForgetSplit(forget, retain, test, forgotten)


def batch_indices(rng: np.random.Generator, size: int, batch_size: int,
                  num_batches: int) -> np.ndarray:
  """``[num_batches, batch_size]`` indices into ``range(size)``.

  Walks through fresh permutations, so every example is seen once before any
  is seen twice; a set smaller than the batch is repeated within a batch.
  """
  needed = num_batches * batch_size
  order = np.concatenate([rng.permutation(size) for _ in range(-(-needed // size))])
  return order[:needed].reshape(num_batches, batch_size)


"""Datasets, the SalUn data protocol, and forget sets.

Protocol (docs/protocol.md): a fixed, seed-determined test split; 10% of each
training class held out as validation; the rest is the training set D, from
which the forget set D_f is drawn and D_r = D \\ D_f.
"""

from __future__ import annotations

import gzip
import os
import re
from typing import NamedTuple

import numpy as np

FORGET_KINDS = ("random", "class", "indices")
TFDS_DATASETS = ("cifar10", "cifar100", "svhn_cropped", "mnist", "fashion_mnist")
DATASETS = ("digits", "fashion_mnist", *(f"tfds:{n}" for n in TFDS_DATASETS))
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
_IDX_DTYPES = {0x08: np.uint8}


class Dataset(NamedTuple):
  x: np.ndarray  # float32 [N, ...]
  y: np.ndarray  # int32 [N]

  def take(self, idx) -> Dataset:
    return Dataset(self.x[idx], self.y[idx])

  def __len__(self):
    return len(self.y)


class Splits(NamedTuple):
  train: Dataset
  val: Dataset
  test: Dataset
  num_classes: int


class ForgetSplit(NamedTuple):
  """Indices into ``Splits.train`` and the test set used for TA."""

  forget: np.ndarray
  retain: np.ndarray
  test: Dataset  # with forgotten classes removed for class-wise forgetting
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


def read_idx(path: str) -> np.ndarray:
  """Reads a (gzipped) IDX file, checking its magic number and size."""
  opener = gzip.open if path.endswith(".gz") else open
  try:
    with opener(path, "rb") as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise ValueError(f"{path}: unreadable IDX file ({e})") from None
  if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
    raise ValueError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
  ndim = raw[3]
  header = 4 + 4 * ndim
  if ndim == 0 or len(raw) < header:
    raise ValueError(f"{path}: truncated IDX header")
  shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  if len(raw) - header != int(np.prod(shape)):
    raise ValueError(f"{path}: IDX body has {len(raw) - header} bytes, header says "
                     f"{int(np.prod(shape))} for shape {shape}")
  return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _idx_pair(directory: str, prefix: str) -> Dataset:
  paths = [os.path.join(directory, f"{prefix}-{kind}-idx{n}-ubyte.gz")
           for kind, n in (("images", 3), ("labels", 1))]
  for path in paths:
    if not os.path.isfile(path):
      raise ValueError(f"Fashion-MNIST file {path} is missing; install it with "
                       "`apt-get install dataset-fashion-mnist` or set data.dir")
  images, labels = read_idx(paths[0]), read_idx(paths[1])
  if images.ndim != 3 or images.shape[1:] != (28, 28):
    raise ValueError(f"{paths[0]}: images of shape {images.shape[1:]}; expected (28, 28)")
  if labels.ndim != 1 or len(labels) != len(images):
    raise ValueError(f"{paths[1]}: {labels.shape} labels for {len(images)} images")
  if labels.max() > 9:
    raise ValueError(f"{paths[1]}: label {labels.max()} outside 0-9")
  return Dataset((images / 255.0).astype(np.float32), labels.astype(np.int32))


def load_fashion_mnist(seed: int, directory: str = FASHION_MNIST_DIR, *,
                       val_fraction: float = 0.1) -> Splits:
  """Fashion-MNIST from gzipped IDX files (Debian's ``dataset-fashion-mnist``).

  The official 10,000-image test set is the test split; 10% of each training
  class is held out as validation, chosen by ``seed``.
  """
  train = _idx_pair(directory, "train")
  test = _idx_pair(directory, "t10k")
  return split(train, seed, test_fraction=0.0, val_fraction=val_fraction, num_classes=10,
               test=test)


def _tfds_split(name: str, split_name: str, data_dir: str | None) -> Dataset:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    source = tfds.data_source(name, split=split_name, data_dir=data_dir, download=False)
    records = [source[i] for i in range(len(source))]
  except Exception as e:  # pylint: disable=broad-except
    where = data_dir or "the default TFDS data dir"
    raise ValueError(
        f"TFDS dataset {name!r} (split {split_name!r}) is not prepared in {where} "
        f"({type(e).__name__}); prepare it where there is internet with `tfds build {name} "
        f"--file_format=array_record` and set data.tfds_data_dir") from None
  images = np.stack([np.asarray(r["image"]) for r in records])
  labels = np.asarray([int(r["label"]) for r in records], np.int32)
  if images.ndim == 3:
    images = images[..., None]
  return Dataset((images / 255.0).astype(np.float32), labels)


def load_tfds(name: str, seed: int, data_dir: str | None = None, *,
              val_fraction: float = 0.1) -> Splits:
  """A TFDS image-classification dataset through ``tfds.data_source`` (no TensorFlow).

  The dataset's own test split is the test set; 10% of each training class
  is held out as validation, chosen by ``seed``. Nothing is downloaded.
  """
  if name not in TFDS_DATASETS:
    raise ValueError(f"data.name='tfds:{name}'; allowed: "
                     f"{', '.join('tfds:' + n for n in TFDS_DATASETS)}")
  train = _tfds_split(name, "train", data_dir)
  test = _tfds_split(name, "test", data_dir)
  num_classes = int(max(train.y.max(), test.y.max())) + 1
  return split(train, seed, test_fraction=0.0, val_fraction=val_fraction,
               num_classes=num_classes, test=test)


def load_dataset(name: str, seed: int, directory: str = "") -> Splits:
  """Loads a registered dataset by name (``directory`` overrides its location).

  ``"digits"`` is embedded; ``"fashion_mnist"`` reads Debian's IDX files;
  ``"tfds:NAME"`` reads a prepared TFDS dataset (``directory`` is its data dir).
  """
  if name == "digits":
    splits = load_digits(seed)
  elif name == "fashion_mnist":
    splits = load_fashion_mnist(seed, directory or FASHION_MNIST_DIR)
  elif name.startswith("tfds:"):
    splits = load_tfds(name[len("tfds:"):], seed, directory or None)
  else:
    raise ValueError(f"data.name={name!r}; allowed: {', '.join(DATASETS)}")
  for part in ("train", "val", "test"):
    check_finite(getattr(splits, part).x, f"{name} {part} inputs")
  return splits


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


"""The built-in datasets by name: embedded digits, Fashion-MNIST from IDX files, and TFDS
image classification sets through ``tfds.data_source``. Each returns the protocol's
:class:`~lur_jax.data.Splits`."""

from __future__ import annotations

import gzip
import os

import numpy as np

from lur_jax import data

TFDS_DATASETS = ("cifar10", "cifar100", "svhn_cropped", "mnist", "fashion_mnist")
DATASETS = ("digits", "fashion_mnist", "markov", *(f"tfds:{n}" for n in TFDS_DATASETS))
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
_IDX_DTYPES = {0x08: np.uint8}


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


def _idx_pair(directory: str, prefix: str) -> data.Dataset:
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
  return data.Dataset((images / 255.0).astype(np.float32), labels.astype(np.int32))


def load_fashion_mnist(seed: int, directory: str = FASHION_MNIST_DIR, *,
                       val_fraction: float = 0.1) -> data.Splits:
  """Fashion-MNIST from gzipped IDX files (Debian's ``dataset-fashion-mnist``).

  The official 10,000-image test set is the test split; 10% of each training
  class is held out as validation, chosen by ``seed``.

  Args:
    seed: chooses the validation hold-out.
    directory: the folder holding ``train-images-idx3-ubyte.gz`` and the three
      other files.
    val_fraction: the fraction of each training class held out.

  Returns:
    :class:`~lur_jax.Splits` of ``[N, 28, 28]`` float32 images in [0, 1], 10 classes.

  Raises:
    ValueError: for a missing, truncated or malformed file.
  """
  train = _idx_pair(directory, "train")
  test = _idx_pair(directory, "t10k")
  return data.split(train, seed, test_fraction=0.0, val_fraction=val_fraction, num_classes=10,
                    test=test)


def _tfds_split(name: str, split_name: str, data_dir: str | None) -> data.Dataset:
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
  return data.Dataset((images / 255.0).astype(np.float32), labels)


def load_tfds(name: str, seed: int, data_dir: str | None = None, *,
              val_fraction: float = 0.1) -> data.Splits:
  """A TFDS image-classification dataset through ``tfds.data_source`` (no TensorFlow).

  The dataset's own test split is the test set; 10% of each training class
  is held out as validation, chosen by ``seed``. Nothing is downloaded.

  Args:
    name: one of ``TFDS_DATASETS`` (``"cifar10"``, ``"cifar100"``,
      ``"svhn_cropped"``, ``"mnist"``, ``"fashion_mnist"``).
    seed: chooses the validation hold-out.
    data_dir: the TFDS data dir (``None``: TFDS's default).
    val_fraction: the fraction of each training class held out.

  Returns:
    :class:`~lur_jax.Splits` of ``[N, H, W, C]`` float32 images in [0, 1].

  Raises:
    ValueError: for an unknown name or a data set not prepared in ``data_dir``.
  """
  if name not in TFDS_DATASETS:
    raise ValueError(f"data.name='tfds:{name}'; allowed: "
                     f"{', '.join('tfds:' + n for n in TFDS_DATASETS)}")
  train = _tfds_split(name, "train", data_dir)
  test = _tfds_split(name, "test", data_dir)
  num_classes = int(max(train.y.max(), test.y.max())) + 1
  return data.split(train, seed, test_fraction=0.0, val_fraction=val_fraction,
                    num_classes=num_classes, test=test)


def load_markov(seed: int, *, vocab: int = 64, seq_len: int = 32, sources: int = 8,
                size: int = 2400, val_fraction: float = 0.1) -> data.Splits:
  """Token sequences from ``sources`` random Markov chains: data for a language model.

  Each source has its own sparse transition table (4 likely successors per token, drawn
  once from a fixed generator, so the data set is the same for every ``seed``); a sequence's
  label is its source, so class-wise forgetting removes one source's sequences. 1/6 of each
  source is the test set and ``val_fraction`` of the rest the validation hold-out.

  Args:
    seed: chooses the validation hold-out.
    vocab: the number of tokens.
    seq_len: tokens per sequence.
    sources: the number of chains (classes).
    size: sequences in all.
    val_fraction: the fraction of each source's training sequences held out.

  Returns:
    :class:`~lur_jax.Splits` of int32 tokens ``[N, seq_len]``, ``sources`` classes.
  """
  rng = np.random.default_rng(20260101)
  table = np.full((sources, vocab, vocab), 1e-3)
  for s in range(sources):
    for t in range(vocab):
      table[s, t, rng.choice(vocab, 4, replace=False)] += rng.dirichlet(np.ones(4))
  cumulative = np.cumsum(table / table.sum(-1, keepdims=True), -1)
  labels = np.arange(size) % sources
  tokens = np.empty((size, seq_len), np.int32)
  tokens[:, 0] = rng.integers(0, vocab, size)
  for t in range(1, seq_len):
    rows = cumulative[labels, tokens[:, t - 1]]
    tokens[:, t] = np.minimum((rows < rng.random((size, 1))).sum(-1), vocab - 1)
  return data.split(data.Dataset(tokens, labels.astype(np.int32)), seed, test_fraction=1 / 6,
                    val_fraction=val_fraction, num_classes=sources)


def load_dataset(name: str, seed: int, directory: str = "") -> data.Splits:
  """Loads a built-in data set by name (``data.name`` in a config).

  Args:
    name: one of ``DATASETS``: ``"digits"`` (embedded), ``"fashion_mnist"``
      (Debian's IDX files), ``"markov"`` (generated token sequences) or ``"tfds:NAME"``
      (a prepared TFDS data set).
    seed: chooses the test split (digits) and the validation hold-out.
    directory: where the files are (Fashion-MNIST's folder, TFDS's data dir);
      empty for the default.

  Returns:
    :class:`~lur_jax.Splits`, every input checked finite.

  Raises:
    ValueError: for an unknown name, missing or malformed data, NaN or Inf.
  """
  if name == "digits":
    splits = data.load_digits(seed)
  elif name == "fashion_mnist":
    splits = load_fashion_mnist(seed, directory or FASHION_MNIST_DIR)
  elif name == "markov":
    splits = load_markov(seed)
  elif name.startswith("tfds:"):
    splits = load_tfds(name[len("tfds:"):], seed, directory or None)
  else:
    raise ValueError(f"data.name={name!r}; allowed: {', '.join(DATASETS)}")
  for part in ("train", "val", "test"):
    data.check_finite(getattr(splits, part).x, f"{name} {part} inputs")
  return splits

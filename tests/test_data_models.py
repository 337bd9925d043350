"""Fashion-MNIST IDX files, TFDS through mock data, ResNet-18 BatchNorm, augmentation."""

import gzip
import json
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from conftest import ROOT

from lur_jax import cli, models
from lur_jax.core import augment, losses, train
from lur_jax.study import datasets

CIFAR_SMOKE = os.path.join(ROOT, "configs", "cifar10_resnet18_smoke.py")
FASHION_SMOKE = os.path.join(ROOT, "configs", "fashion_mnist_smoke.py")


def _write_idx(path, array, magic_type=0x08):
  header = bytes([0, 0, magic_type, array.ndim]) + b"".join(
      struct.pack(">I", n) for n in array.shape)
  with gzip.open(path, "wb") as f:
    f.write(header + array.astype(np.uint8).tobytes())


def _fake_fashion(directory, n_train=200, n_test=50, label_max=9):
  rng = np.random.default_rng(0)
  for prefix, n in (("train", n_train), ("t10k", n_test)):
    _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
    _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz",
               np.arange(n) % (label_max + 1))


def test_idx_round_trip_and_fashion_splits(tmp_path):
  _fake_fashion(tmp_path)
  splits = datasets.load_fashion_mnist(0, str(tmp_path))
  assert len(splits.train) + len(splits.val) == 200 and len(splits.test) == 50
  assert splits.train.x.shape[1:] == (28, 28) and splits.train.x.max() <= 1.0


@pytest.mark.parametrize("corrupt, match", [
    ("magic", "bad magic number"),
    ("truncate", "IDX body has"),
    ("labels", "label 12 outside 0-9"),
    ("missing", "apt-get install dataset-fashion-mnist"),
    ("garbage", "unreadable IDX file"),
])
def test_bad_fashion_files_are_clear_errors(tmp_path, corrupt, match):
  _fake_fashion(tmp_path, label_max=12 if corrupt == "labels" else 9)
  images = tmp_path / "train-images-idx3-ubyte.gz"
  if corrupt == "magic":
    with gzip.open(images, "wb") as f:
      f.write(b"\x00\x00\x0d\x03" + b"\x00" * 20)
  elif corrupt == "truncate":
    raw = gzip.open(images).read()
    with gzip.open(images, "wb") as f:
      f.write(raw[:-100])
  elif corrupt == "missing":
    images.unlink()
  elif corrupt == "garbage":
    images.write_bytes(b"not gzip at all")
  with pytest.raises(ValueError, match=match):
    datasets.load_fashion_mnist(0, str(tmp_path))


def test_fashion_mnist_cli_errors_before_work(tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["run", FASHION_SMOKE, "--out", str(out), "--set",
                   f"data.dir={tmp_path / 'nothing'}"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "apt-get install dataset-fashion-mnist" in err
  assert not out.exists()


def test_real_fashion_mnist_from_the_debian_package():
  splits = datasets.load_fashion_mnist(0)
  assert (len(splits.train), len(splits.val), len(splits.test)) == (54000, 6000, 10000)
  assert np.bincount(splits.val.y).tolist() == [600] * 10


def test_unprepared_tfds_dataset_is_a_clear_error(tmp_path, capsys):
  out = tmp_path / "out"
  assert cli.main(["run", CIFAR_SMOKE, "--out", str(out), "--set",
                   f"data.tfds_data_dir={tmp_path}"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "'cifar10' (split 'train') is not prepared" in err
  assert not out.exists()


@pytest.mark.slow
def test_resnet18_cifar_smoke_on_tfds_mock_data(tmp_path):
  out = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    assert cli.main(["run", CIFAR_SMOKE, "--out", str(out), "--no-progress",
                     "--set", "methods=retrain,lur"]) == 0
  results = json.loads((out / "results.json").read_text())
  assert results["config"]["model"]["name"] == "resnet18"
  for row in results["methods"].values():
    assert all(0.0 <= row[k] <= 100.0 for k in ("UA", "RA", "TA", "MIA")), row


@pytest.mark.slow
def test_resnet18_every_method_on_tfds_mock_data(tmp_path):
  out = tmp_path / "run"
  with tfds.testing.mock_data(num_examples=48, policy=tfds.testing.MockPolicy.USE_CODE):
    assert cli.main(["run", CIFAR_SMOKE, "--out", str(out), "--no-progress"]) == 0
  results = json.loads((out / "results.json").read_text())
  assert len(results["methods"]) == 10
  assert all("UA" in row for row in results["methods"].values())


@pytest.mark.slow
def test_batchnorm_running_statistics_follow_the_retain_batches():
  model = models.build_model("resnet18", 10, (8, 8, 3), width=2)
  params = model.init(jax.random.key(0))
  model_state = model.init_state(jax.random.key(0))
  x = jax.random.normal(jax.random.key(1), (16, 8, 8, 3)) * 3.0 + 1.0
  batch = {"x": x, "y": jnp.arange(16) % 10}
  ce = losses.ce_objective(model.apply)
  update = lambda p, s, b: models.update_running_stats(s, model.batch_moments(p, b["x"]))
  tx = train.sgd(1e-9, weight_decay=0.0)
  step = jax.jit(train.objective_step(lambda p, rb, fb: ce(p, rb), tx, state_update=update))
  state = train.init_state(params, tx, jax.random.key(0), model_state)
  for _ in range(120):
    state, _ = step(state, batch, batch)
  moments = model.batch_moments(params, x)
  # After 120 EMA steps (momentum 0.9) the running statistics equal the batch's.
  for got, want in zip(jax.tree.leaves(state.model_state), jax.tree.leaves(moments)):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)
  # Evaluation with those statistics reproduces the training-mode output on that batch.
  np.testing.assert_allclose(model.eval_apply(state.params, state.model_state, x),
                             model.apply(state.params, x), rtol=1e-3, atol=1e-3)
  # The training pass normalises with the batch's own moments, never the running statistics
  # (so losses stay pure in params and batch): it equals evaluation with the statistics set
  # to those moments, and not evaluation with the initial statistics.
  train_out = model.apply(params, x)
  np.testing.assert_allclose(train_out, model.eval_apply(params, moments, x), rtol=1e-5,
                             atol=1e-5)
  assert not np.allclose(train_out, model.eval_apply(params, model_state, x), atol=1e-2)


def test_augmentation_crops_within_padding_and_flips():
  images = jnp.arange(2 * 6 * 6 * 1, dtype=jnp.float32).reshape(2, 6, 6, 1)
  out = augment.random_crop_flip(jax.random.key(0), images, padding=0)
  for img, got in zip(images, out):
    assert bool(jnp.all(got == img)) or bool(jnp.all(got == img[:, ::-1]))
  out = augment.random_crop_flip(jax.random.key(1), images, padding=2)
  assert out.shape == images.shape
  flips = [bool(jnp.all(augment.random_crop_flip(jax.random.key(k), images, 0)[0]
                        == images[0, :, ::-1])) for k in range(20)]
  assert 0 < sum(flips) < 20


@pytest.mark.parametrize("name", ["cifar10_resnet18", "cifar10_resnet18_50",
                                  "cifar10_resnet18_class", "cifar100_resnet18",
                                  "cifar100_resnet18_smoke", "fashion_mnist",
                                  "fashion_mnist_class"])
def test_every_config_validates(name):
  from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.load(os.path.join(ROOT, "configs", f"{name}.py"))
  assert config_lib.validate(config) == config.methods.split(",")

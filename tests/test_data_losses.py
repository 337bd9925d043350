"""Data protocol, forget sets, per-example losses, metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lur_jax
from lur_jax.core import data, losses, metrics


@pytest.fixture(scope="module")
def splits():
  return data.load_digits(seed=0)


def test_digits_split_is_seeded_disjoint_and_stratified(splits):
  total = len(splits.train) + len(splits.val) + len(splits.test)
  assert total == 1797
  assert splits.train.x.shape[1:] == (8, 8) and splits.train.x.dtype == np.float32
  assert 0.0 <= splits.train.x.min() and splits.train.x.max() <= 1.0
  # 10% of each training class is held out as validation.
  for c in range(10):
    n_val = int((splits.val.y == c).sum())
    n_train = int((splits.train.y == c).sum())
    assert n_val == round(0.1 * (n_val + n_train))
  again = data.load_digits(seed=0)
  np.testing.assert_array_equal(again.test.x, splits.test.x)
  other = data.load_digits(seed=1)
  assert not np.array_equal(other.test.x, splits.test.x)
  # No image is in two splits (digits has a few exact duplicates, so compare rows by index).
  rows = {tuple(r) for r in splits.train.x.reshape(len(splits.train), -1)}
  shared = sum(tuple(r) in rows for r in splits.test.x.reshape(len(splits.test), -1))
  assert shared <= 5


def test_random_forget_set(splits):
  fs = data.make_forget_split(splits, "random", seed=0, fraction=0.1)
  n = len(splits.train)
  assert len(fs.forget) == round(0.1 * n)
  assert len(np.intersect1d(fs.forget, fs.retain)) == 0
  assert len(fs.forget) + len(fs.retain) == n
  assert len(fs.test) == len(splits.test)
  again = data.make_forget_split(splits, "random", seed=0, fraction=0.1)
  np.testing.assert_array_equal(again.forget, fs.forget)


def test_class_forget_set_removes_the_class_from_test(splits):
  fs = data.make_forget_split(splits, "class", seed=0, classes="3,5")
  assert set(splits.train.y[fs.forget]) == {3, 5}
  assert not np.isin(splits.train.y[fs.retain], [3, 5]).any()
  assert not np.isin(fs.test.y, [3, 5]).any()
  assert len(fs.test) == int((~np.isin(splits.test.y, [3, 5])).sum())


def test_indices_forget_set_from_list_and_file(splits, tmp_path):
  fs = data.make_forget_split(splits, "indices", seed=0, indices="4,1,9")
  np.testing.assert_array_equal(fs.forget, [1, 4, 9])
  path = tmp_path / "idx.txt"
  path.write_text("7\n2 11\n")
  np.testing.assert_array_equal(
      data.make_forget_split(splits, "indices", seed=0, indices=str(path)).forget, [2, 7, 11])
  npy = tmp_path / "idx.npy"
  np.save(npy, np.array([3, 8]))
  np.testing.assert_array_equal(
      data.make_forget_split(splits, "indices", seed=0, indices=str(npy)).forget, [3, 8])


@pytest.mark.parametrize("kw, match", [
    (dict(kind="random", fraction=0.0), r"forget.fraction=0.0; allowed: a number in \(0, 1\)"),
    (dict(kind="random", fraction=1.5), r"forget.fraction=1.5"),
    (dict(kind="random", fraction=1e-6), "empty forget set"),
    (dict(kind="random", fraction=0.99999), "forgets all"),
    (dict(kind="class", classes="12"), "class 12 is not in the dataset"),
    (dict(kind="class", classes="0,1,2,3,4,5,6,7,8,9"), "forgets every class"),
    (dict(kind="class", classes="a"), "allowed: comma-separated integers"),
    (dict(kind="class", classes=""), "forget.classes is empty"),
    (dict(kind="indices", indices="1,2,2"), "index 2 is repeated"),
    (dict(kind="indices", indices="5,100000"), "index 100000 is out of range"),
    (dict(kind="indices", indices=""), "forget.indices is empty"),
    (dict(kind="indices", indices="/no/such/file.txt"), "no such file"),
    (dict(kind="all"), "forget.kind='all'"),
])
def test_bad_forget_sets_raise_value_error(splits, kw, match):
  with pytest.raises(ValueError, match=match):
    data.make_forget_split(splits, seed=0, **kw)


def test_forget_everything_by_indices_is_refused(splits):
  every = ",".join(map(str, range(len(splits.train))))
  with pytest.raises(ValueError, match="forgets all"):
    data.make_forget_split(splits, "indices", seed=0, indices=every)


def test_batch_indices_cover_the_set_before_repeating():
  idx = data.batch_indices(np.random.default_rng(0), 10, 4, 5)
  assert idx.shape == (5, 4)
  assert sorted(idx.ravel()[:10]) == list(range(10))
  assert sorted(idx.ravel()[10:20]) == list(range(10))


def test_losses():
  logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
  labels = jnp.array([0, 2])
  ce = losses.cross_entropy(logits, labels)
  want = -jax.nn.log_softmax(logits)[jnp.arange(2), labels]
  np.testing.assert_allclose(ce, want, rtol=1e-6)
  np.testing.assert_allclose(losses.true_class_confidence(logits, labels),
                             jnp.exp(-want), rtol=1e-6)

  def apply(params, x):
    return x @ params

  params = jnp.eye(3)
  batch = {"x": logits, "y": labels, "key": jax.random.key(0)}
  ga = losses.forget_objective("ga", apply, 3)
  np.testing.assert_allclose(ga(params, batch), -ce.mean(), rtol=1e-6)
  with pytest.raises(ValueError, match="forget objective 'xx'"):
    losses.forget_objective("xx", apply, 3)


def test_random_wrong_labels_never_hit_the_true_label():
  labels = jnp.arange(1000) % 10
  wrong = losses.random_wrong_labels(jax.random.key(0), labels, 10)
  assert not bool((wrong == labels).any())
  assert set(np.unique(wrong).tolist()) == set(range(10))


def test_mia_efficacy_separates_confident_members():
  rng = np.random.default_rng(0)
  members = rng.uniform(0.95, 1.0, 300)
  non_members = rng.uniform(0.0, 0.6, 300)
  assert metrics.mia_efficacy(members, non_members, rng.uniform(0.97, 1.0, 50), 0) == 0.0
  assert metrics.mia_efficacy(members, non_members, rng.uniform(0.0, 0.5, 50), 0) == 100.0


def test_avg_gap():
  ref = {"UA": 5.0, "RA": 99.0, "TA": 95.0, "MIA": 10.0}
  row = {"UA": 7.0, "RA": 98.0, "TA": 95.0, "MIA": 6.0}
  assert lur_jax.avg_gap(row, ref) == pytest.approx((2 + 1 + 0 + 4) / 4)


def test_the_functional_api_names_a_bad_batch_or_state():
  import optax  # pylint: disable=g-import-not-at-top
  apply = lambda p, x: x @ p
  params, x, y = jnp.ones((4, 3)), jnp.ones((2, 4)), jnp.zeros(2, jnp.int32)
  ce = lur_jax.ce_objective(apply)
  with pytest.raises(ValueError, match=r"the batch has no 'y' \(it holds \['label', 'x'\]\)"):
    ce(params, {"x": x, "label": y})
  with pytest.raises(TypeError, match=r"labels of dtype float32 and shape \(2, 3\).*argmax"):
    ce(params, {"x": x, "y": jnp.eye(3)[:2]})
  with pytest.raises(ValueError, match="rl's random labels.*no 'key'"):
    lur_jax.forget_objective("rl", apply, 3)(params, {"x": x, "y": y})
  step = lur_jax.lur_step(optax.sgd(0.1), retain_loss_fn=ce, forget_loss_fn=ce, inner_lr=0.1)
  with pytest.raises(TypeError, match="state of type dict; allowed: a TrainState"):
    step({"w": params}, {"x": x, "y": y}, {"x": x, "y": y})
  with pytest.raises(ValueError, match=r"retain batch with keys \['label', 'x'\]"):
    step(lur_jax.init_state(params, optax.sgd(0.1), jax.random.key(0)), {"x": x, "label": y},
         {"x": x, "y": y})
  assert "as in" not in lur_jax.lur_step.__doc__ and "inner_lr: α" in lur_jax.lur_step.__doc__

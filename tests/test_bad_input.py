"""Bad input across the command line and the Python API: one clear line
(exit code 2, or a ValueError), before any work, and nothing written."""

import conftest
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import DDPM_SMOKE, SMOKE

from lur_jax import cli, models, study
from lur_jax.core import data, losses, lur, saliency, train
from lur_jax.study import config as config_lib
from lur_jax.training import loop, parallel, sharding


@pytest.mark.parametrize("sets, match", [
    # wrong types
    (["train.epochs=1.5"], "train.epochs='1.5'; allowed: an int"),
    (["train.lr=fast"], "train.lr='fast'; allowed: a number"),
    (["lur.remat=maybe"], "lur.remat='maybe'; allowed: true or false"),
    (["seed=-3"], "seed=-3; allowed: an int >= 0"),
    # zero or negative sizes and rates
    (["train.epochs=0"], "train.epochs=0; allowed: an int > 0"),
    (["train.batch_size=0"], "train.batch_size=0; allowed: an int > 0"),
    (["unlearn.forget_batch_size=-8"], "unlearn.forget_batch_size=-8; allowed: an int > 0"),
    (["train.lr=-0.05"], "train.lr=-0.05; allowed: a number > 0"),
    (["lur.inner_lr=0"], "lur.inner_lr=0.0; allowed: a number > 0"),
    (["l1_sparse.alpha=-1"], "l1_sparse.alpha=-1.0; allowed: a number > 0"),
    (["ga.lr=nan"], "ga.lr='nan'; allowed: a number"),
    # values outside their sets
    (["lur.lookahead=sideways"], "lur.lookahead='sideways'"),
    (["lur.forget_objective=kl"], "lur.forget_objective='kl'"),
    (["model.name=resnet50"], "model.name='resnet50'"),
    (["eval.split=train"], "eval.split='train'; allowed: test, val"),
    (["forget.kind=everything"], "forget.kind='everything'"),
    (["salun.gamma=1.0"], "salun.gamma=1.0; allowed: a number in (0, 1)"),
    (["shs.sparsity=0"], "shs.sparsity=0.0; allowed: a number in (0, 1)"),
    (["shs.layers=layer9"], "layer 'layer9' matches no parameter; allowed: all, fc"),
    (["checkpoint.every=-1"], "checkpoint.every=-1; allowed: an int >= 0"),
    (["checkpoint.keep=0"], "checkpoint.keep=0; allowed: an int >= 1"),
    (["methods=lur,retrain,lur"], "names a method twice"),
    (["methods=,"], "allowed: a comma-separated subset"),
    # conflicting keys
    (["seed=1", "seed=2"], "--set seed given twice ('1' and '2'); allowed: once"),
    (["forget.kind=class", "forget.classes=3,x"],
     "forget.classes='3,x'; allowed: comma-separated integers"),
    # data that is missing
    (["data.name=fashion_mnist", "data.dir=/nonexistent"], "apt-get install"),
    (["model.width=4"], "unknown config key 'model.width'; allowed in this section: name"),
    # meshes that cannot be built on this one device (more in test_parallel.py, on 8)
    (["mesh.fsdp=2"], "mesh: 1 devices do not divide over 2"),
    (["mesh.fsdp=-1"], "mesh: mesh.data and mesh.fsdp are both -1; allowed: at most one"),
    (["mesh.tensor=0"], "mesh.tensor=0; allowed: an int >= 1, or -1 for the rest"),
    (["mesh.data=2", "mesh.fsdp=1"], "data × fsdp × tensor = 2; allowed: the device count, 1"),
    # distributed settings that cannot work
    (["distributed.coordinator=127.0.0.1:1", "distributed.num_processes=2",
      "distributed.process_id=5"], "process_id=5"),
])
def test_cli_refuses(sets, match, refused):
  refused(["run", SMOKE, *conftest.sets(*sets)], match)




@pytest.mark.parametrize("sets, match", [
    (["methods=retrain,ft"], "'ft' does not run on task='diffusion'; allowed: retrain, ga"),
    (["forget.kind=random"], "forget.kind='random'; allowed: class"),
    (["model.name=cnn"], "model.name='cnn'; allowed: unet"),
    (["model.channels=(12, 32)"], "model.channels=(12, 32); allowed: ints >= 8, multiples of 8"),
    (["model.channels=(8, 16, 16, 16, 16)"], "allowed: [H, W(, C)] with H and W divisible by 16"),
    (["diffusion.sampler=euler"], "diffusion.sampler='euler'; allowed: ddim, ddpm"),
    (["diffusion.p_uncond=1.5"], "diffusion.p_uncond=1.5; allowed: a number in [0, 1)"),
    (["diffusion.sample_steps=0"], "diffusion.sample_steps=0; allowed: a number in [1, 100]"),
    (["diffusion.steps=1"], "diffusion.steps=1; allowed: a number in [2, 100000)"),
    (["diffusion.beta_start=0.5"], "beta_start=0.5 >= diffusion.beta_end=0.02"),
    (["diffusion.guidance=-1"], "diffusion.guidance=-1.0; allowed: a number in [0, 100]"),
    (["eval.forget_samples=0"], "eval.forget_samples=0; allowed: an int > 0"),
    (["classifier.model=vit"], "classifier.model='vit'; allowed: mlp, cnn, resnet18"),
    (["train.optimizer=rmsprop"], "train.optimizer='rmsprop'; allowed: sgd, adam"),
    (["task=segmentation"], "task='segmentation'; allowed: classification, diffusion"),
])
def test_cli_refuses_bad_diffusion_settings(sets, match, refused):
  refused(["run", DDPM_SMOKE, *conftest.sets(*sets)], match)


@pytest.mark.parametrize("out, match", [
    ("", "--out ''; allowed: a folder path"),
    ("/proc/lur-jax-out", "is not writable"),
    ("{file}/sub", "lies under the file"),
    ("{file}", "is a file"),
])
def test_cli_refuses_bad_out(out, match, tmp_path, capsys):
  a_file = tmp_path / "a_file"
  a_file.write_text("keep me")
  out = out.format(file=a_file)
  assert cli.main(["run", SMOKE, "--out", out, "--no-progress"]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and match in err, err
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
  assert a_file.read_text() == "keep me"


def test_config_without_get_config(tmp_path, capsys):
  bad = tmp_path / "bad.py"
  bad.write_text("x = 1\n")
  assert cli.main(["run", str(bad), "--out", str(tmp_path / "o")]) == 2
  assert "has no get_config()" in capsys.readouterr().err
  assert not (tmp_path / "o").exists()


def _mlp():
  model = models.build_model("mlp", 10, (8, 8))
  params = model.init(jax.random.key(0))
  return model, params


def test_api_mismatched_shapes_between_params_and_batches():
  model, params = _mlp()
  with pytest.raises(ValueError, match=r"inputs of shape \(4, 28, 28\) for a mlp built for "
                                       r"examples of shape \(8, 8\)"):
    model.apply(params, jnp.zeros((4, 28, 28)))
  ce = losses.ce_objective(model.apply)
  step = train.lur_step(train.sgd(0.1), retain_loss_fn=ce,
                        forget_loss_fn=losses.forget_objective("ga", model.apply, 10),
                        inner_lr=0.1)
  state = train.init_state(params, train.sgd(0.1), jax.random.key(1))
  good = {"x": jnp.zeros((4, 8, 8)), "y": jnp.zeros(4, jnp.int32)}
  with pytest.raises(ValueError, match=r"x \(4, 8, 8\) and y \(3,\); allowed: y of shape"):
    step(state, {"x": good["x"], "y": jnp.zeros(3, jnp.int32)}, good)
  with pytest.raises(ValueError, match="retain examples of shape .* but forget examples"):
    step(state, good, {"x": jnp.zeros((4, 9, 9)), "y": good["y"]})
  with pytest.raises(ValueError, match="allowed: a dict with 'x' and 'y'"):
    step(state, good, {"x": good["x"]})


def test_api_nan_in_data(tmp_path):
  config = config_lib.load(SMOKE)
  exp = study.prepare(config).only()
  x = np.array(exp.splits.train.x)
  x[7, 2, 3] = np.nan
  model, params = _mlp()
  state = train.init_state(params, train.sgd(0.1), jax.random.key(1))
  with pytest.raises(ValueError, match="example 7 holds NaN or Inf"):
    loop.fit(lambda s, r, f: (s, {}), state, x, exp.splits.train.y, np.arange(10),
                   np.arange(10, 20), mesh=exp.mesh, epochs=1, batch_size=4,
                   forget_batch_size=4, iterate="retain", seed=0, desc="x", progress=False)
  with pytest.raises(ValueError, match="holds NaN"):
    data.check_finite(np.array([[1.0, np.inf]]))


@pytest.mark.parametrize("call, match", [
    (lambda: train.sgd(0.0), "learning rate 0.0; allowed: a number > 0"),
    (lambda: sharding.make_mesh(devices=99), "devices=99; allowed: 0 \\(all\\) or 1.."),
    (lambda: parallel.check_divisible("batch_size", 30, 4), "does not divide by devices=4"),
    (lambda: parallel.distributed_init("127.0.0.1:1", 2, 9), "process_id=9"),
    (lambda: losses.forget_objective("kl", None, 10), "forget objective 'kl'"),
    (lambda: lur.check_settings("retain", "magic", 1),
     "mode='magic'; allowed: exact, hvp, first_order"),
    (lambda: lur.check_inner_steps(0), "inner_steps=0; allowed: an int >= 1"),
    (lambda: saliency.check_fraction(1.5, "salun.gamma"), "salun.gamma=1.5"),
    (lambda: models.build_model("cnn", 10, (8, 8), kernels=3),
     r"model 'cnn': CNN\.__init__\(\) got an unexpected keyword argument 'kernels'"),
    (lambda: config_lib.apply_overrides(config_lib.load(SMOKE), ["lur.lr=1", "lur.lr=2"]),
     "given twice"),
    (lambda: study.check_out_dir(""), "allowed: a folder path"),
])
def test_api_raises_value_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()

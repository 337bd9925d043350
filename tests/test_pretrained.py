"""Pretrained decoders: Hugging Face checkpoints written by ``transformers``
(``tests/hf_fixtures.py``) give transformers' logits in lur_jax, sharded or not; export and
reload are exact; LUR's second-order modes differentiate the decoder; bad checkpoints are one
line."""

import json
import os
import shutil

import conftest
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import ROOT

import lur_jax
from lur_jax.core import losses
from lur_jax.models import decoder, hf

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "hf")
NAMES = ("llama3", "llama2", "mistral", "qwen2", "gpt2", "gemma")


def _fixture(name):
  path = os.path.join(FIXTURES, name)
  return path, np.load(os.path.join(path, "tokens.npy")), np.load(os.path.join(path, "logits.npy"))


@pytest.mark.parametrize("name", NAMES)
def test_logits_equal_transformers_logits(name):
  path, tokens, want = _fixture(name)
  model, params = lur_jax.load_pretrained(path)
  got = np.asarray(jax.jit(model.apply)(params, jnp.asarray(tokens)))
  # measured: at most 4.1e-7 of the largest logit (float32 on this CPU)
  assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max(), name


@pytest.mark.parametrize("name", ["llama3", "gpt2"])
def test_save_then_load_gives_the_same_parameters_and_config(tmp_path, name):
  path, tokens, _ = _fixture(name)
  model, params = lur_jax.load_pretrained(path)
  lur_jax.save_pretrained(str(tmp_path), model, params)
  again, params2 = lur_jax.load_pretrained(str(tmp_path))
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2)):
    np.testing.assert_array_equal(a, b)
  with open(os.path.join(path, "config.json")) as f:
    source = json.load(f)
  with open(tmp_path / "config.json") as f:
    written = json.load(f)
  assert written["model_type"] == source["model_type"]
  assert hf.config_from_hf(written) == hf.config_from_hf(source)
  np.testing.assert_array_equal(again.apply(params2, tokens), model.apply(params, tokens))


def test_both_config_generations_read_alike():
  with open(os.path.join(FIXTURES, "llama3", "config.json")) as f:
    new = json.load(f)  # transformers 5 writes rope_parameters
  scaling = dict(new["rope_parameters"])
  old = {k: v for k, v in new.items() if k != "rope_parameters"}
  old["rope_theta"] = scaling.pop("rope_theta")
  kind = scaling.pop("rope_type")
  old["rope_scaling"] = {**scaling, "type": kind}  # the oldest spelling
  assert hf.config_from_hf(old) == hf.config_from_hf(new)
  assert dict(hf.config_from_hf(new).rope_scaling)["rope_type"] == "llama3"


@pytest.mark.study  # two second-order programs compiled
def test_hvp_equals_exact_through_the_pretrained_decoder():
  path, tokens, _ = _fixture("llama3")
  model, params = lur_jax.load_pretrained(path)
  loss = lambda p, b: losses.next_token_nll(model.apply(p, b["x"]), b["x"]).mean()
  retain, forget = {"x": jnp.asarray(tokens[:1])}, {"x": jnp.asarray(tokens[1:])}
  grads = {mode: jax.jit(lambda p, mode=mode: lur_jax.lur_value_and_grad(
      p, retain, forget, retain_loss_fn=loss, forget_loss_fn=lambda q, b: -loss(q, b),
      inner_lr=0.1, mode=mode)[1])(params) for mode in ("exact", "hvp")}
  for a, b in zip(jax.tree.leaves(grads["hvp"]), jax.tree.leaves(grads["exact"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["llama3", "gpt2"])
def test_chunked_and_xla_attention_give_the_plain_decoders_logits_and_generations(name):
  path, tokens, _ = _fixture(name)
  tokens = jnp.asarray(tokens)
  out = {}
  for kind in ("plain", "chunked", "xla"):
    model, params = lur_jax.load_pretrained(path, attention=kind, attention_chunk=3)
    config = model.apply.pretrained[0]
    assert config.attention == kind
    out[kind] = (np.asarray(jax.jit(model.apply)(params, tokens)),
                 np.asarray(decoder.greedy(config, params, tokens, jnp.array([3, 5]), 4, eos=-1)))
  scale = np.abs(out["plain"][0]).max()
  for kind in ("chunked", "xla"):
    assert np.abs(out[kind][0] - out["plain"][0]).max() <= 1e-5 * scale, kind
    np.testing.assert_array_equal(out[kind][1], out["plain"][1])
  with pytest.raises(ValueError, match="attention='flash'; allowed: plain, chunked, xla, cudnn"):
    lur_jax.load_pretrained(path, attention="flash")


def _broken(tmp_path, name, edit_config=None, drop=None, reshape=None):
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  src, _, _ = _fixture(name)
  out = tmp_path / "broken"
  shutil.copytree(src, out)
  if edit_config:
    with open(out / "config.json") as f:
      cfg = json.load(f)
    edit_config(cfg)
    with open(out / "config.json", "w") as f:
      json.dump(cfg, f)
  if drop or reshape:
    arrays = load_file(str(out / "model.safetensors"))
    if drop:
      del arrays[drop]
    if reshape:
      arrays[reshape] = arrays[reshape][:-1]
    save_file(arrays, str(out / "model.safetensors"))
  return str(out)


@pytest.mark.parametrize("how, match", [
    ({"edit_config": lambda c: c.update(model_type="bloom")},
     r"model_type='bloom'; allowed: llama, mistral, qwen2, gemma, gpt2$"),
    ({"drop": "model.layers.1.mlp.up_proj.weight"},
     r"tensor 'model.layers.1.mlp.up_proj.weight' is missing"),
    ({"reshape": "model.layers.0.self_attn.k_proj.weight"},
     r"tensor 'model.layers.0.self_attn.k_proj.weight' has shape \(15, 32\); allowed: \(16, 32\)"),
    ({"edit_config": lambda c: c.update(rope_parameters={"rope_type": "yarn", "factor": 2.0,
                                                         "rope_theta": 1e4})},
     r"rope_type='yarn'; allowed: default, linear, llama3$"),
])
def test_bad_checkpoints_are_one_line(tmp_path, how, match):
  path = _broken(tmp_path, "llama3", **how)
  with pytest.raises(ValueError, match=match) as e:
    lur_jax.load_pretrained(path)
  assert "\n" not in str(e.value)


def test_a_folder_without_config_is_refused(tmp_path):
  with pytest.raises(ValueError, match="has no config.json; allowed: a Hugging Face checkpoint"):
    lur_jax.load_pretrained(str(tmp_path))


@pytest.mark.study
def test_a_sharded_load_reads_each_devices_slice_and_gives_the_same_logits():
  rows = conftest.json_lines(os.path.join("tests", "pretrained_sharded_check.py"), "llama3",
                            "1,8,1", "1,4,2")
  for row in rows:
    assert row["placed"] and row["logits"] < 2e-5, row
    assert row["sharded"] > row["parameters"] // 2 and row["largest_piece"] < 0.3, row


@pytest.mark.slow  # needs torch and transformers: pip install -e ".[hf]"
@pytest.mark.parametrize("name", NAMES)
def test_an_exported_model_loads_in_transformers_to_the_same_logits(tmp_path, name):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  path, tokens, _ = _fixture(name)
  model, params = lur_jax.load_pretrained(path)
  params = jax.tree.map(lambda p: p * 1.01 + 0.001, params)  # an unlearned model, say
  want = np.asarray(model.apply(params, jnp.asarray(tokens)))
  lur_jax.save_pretrained(str(tmp_path), model, params)
  theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
  with torch.no_grad():
    got = theirs(torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("name", ["llama3", "gpt2"])
def test_greedy_decoding_with_the_cache_equals_decoding_without(name):
  from lur_jax.lm import evaluate  # pylint: disable=g-import-not-at-top
  from lur_jax.models import decoder  # pylint: disable=g-import-not-at-top
  path, tokens, _ = _fixture(name)
  model, params = lur_jax.load_pretrained(path)
  config = model.apply.pretrained[0]
  prompts = np.zeros((2, 20), np.int32)
  prompts[:, :12] = tokens
  lengths = np.array([5, 9])
  plain = evaluate.greedy(model.apply, params, prompts, lengths, 8, eos=-1)
  eos = int(plain[0, 2])  # a token generated early: decoding stops after it, pads follow
  want = evaluate.greedy(model.apply, params, prompts, lengths, 8, eos=eos, pad=0)
  assert (want == 0).any()
  got = jax.jit(lambda p: decoder.greedy(config, p, prompts, lengths, 8, eos=eos, pad=0))(params)
  np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # needs torch and transformers: pip install -e ".[hf]"
@pytest.mark.parametrize("name", NAMES)
def test_gradients_of_the_answer_nll_equal_torchs(name):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  path, tokens, _ = _fixture(name)
  labels = np.zeros(tokens.shape, bool)
  labels[:, 5:] = True  # the answer: every token from position 5 on
  model, params = lur_jax.load_pretrained(path)
  from lur_jax.lm import losses as lm_losses  # pylint: disable=g-import-not-at-top
  grads = jax.grad(lambda p: lm_losses.answer_loss(model.apply(p, jnp.asarray(tokens)),
                                                   jnp.asarray(tokens), labels))(params)
  ours = hf.to_hf_tensors(model.apply.pretrained[0], grads)
  theirs_model = transformers.AutoModelForCausalLM.from_pretrained(path).eval()
  x = torch.as_tensor(tokens, dtype=torch.long)
  target = torch.where(torch.as_tensor(labels), x, torch.full_like(x, -100))
  theirs_model(x, labels=target).loss.backward()  # transformers shifts the labels itself
  theirs = {n: p.grad.numpy() for n, p in theirs_model.named_parameters()}
  assert set(theirs) <= set(ours), set(theirs) - set(ours)
  for n, g in theirs.items():
    np.testing.assert_allclose(ours[n], g, rtol=1e-4, atol=1e-5 * np.abs(g).max(), err_msg=n)


def test_a_checkpoint_in_shards_reads_as_one(tmp_path):
  from safetensors.numpy import load_file, save_file  # pylint: disable=g-import-not-at-top
  path, tokens, want = _fixture("llama2")
  arrays = load_file(os.path.join(path, "model.safetensors"))
  names = sorted(arrays)
  weight_map = {}
  for k, part in enumerate((names[::2], names[1::2])):
    file = f"model-{k + 1:05d}-of-00002.safetensors"
    save_file({n: arrays[n] for n in part}, str(tmp_path / file))
    weight_map.update({n: file for n in part})
  (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
  shutil.copy(os.path.join(path, "config.json"), tmp_path)
  model, params = lur_jax.load_pretrained(str(tmp_path))
  got = np.asarray(model.apply(params, jnp.asarray(tokens)))
  assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()

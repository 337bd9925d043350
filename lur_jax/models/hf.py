"""Hugging Face checkpoints in and out: ``config.json`` and safetensors to a
:class:`~lur_jax.models.decoder.Decoder` and its parameters, and back.

:func:`load_pretrained` reads a local checkpoint folder (``model.safetensors``, or the shards
a ``model.safetensors.index.json`` lists); on a sharded mesh every device's slice of every
parameter is read from the file by itself (``jax.make_array_from_callback`` over
``safetensors``' lazy slices), so the whole model never sits on one device or in host memory.
:func:`save_pretrained` writes ``config.json`` and ``model.safetensors`` that
``transformers.AutoModelForCausalLM.from_pretrained`` loads. The name mapping is one table,
:func:`tensors`, learned from ``transformers``' own modelling files (and tunix's and levanter's
loaders); both ``config.json`` generations are read (``rope_theta`` + ``rope_scaling``, and
transformers 5's ``rope_parameters``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from lur_jax import extras, models
from lur_jax.models import decoder
from lur_jax.training import checkpoint, sharding

#: ``model_type`` -> the decoder family that reads it.
MODEL_TYPES = {"llama": "llama", "mistral": "llama", "qwen2": "llama", "gemma": "llama",
               "gpt2": "gpt2"}
_ARCHITECTURES = {"llama": "LlamaForCausalLM", "mistral": "MistralForCausalLM",
                  "qwen2": "Qwen2ForCausalLM", "gemma": "GemmaForCausalLM"}


def _rope(cfg: dict) -> tuple[float, tuple]:
  """``(theta, scaling pairs)`` from either ``config.json`` generation."""
  params = cfg.get("rope_parameters")
  if params:  # transformers 5
    params = dict(params)
    theta = params.pop("rope_theta", cfg.get("rope_theta", 10_000.0))
  else:
    theta, params = cfg.get("rope_theta", 10_000.0), dict(cfg.get("rope_scaling") or {})
  if "type" in params and "rope_type" not in params:  # the oldest spelling
    params["rope_type"] = params.pop("type")
  return float(theta), tuple(sorted(params.items()))


def config_from_hf(cfg: dict, dtype: str = "float32", remat: str = "none",
                   attention: str = "plain", attention_chunk: int = 128
                   ) -> decoder.DecoderConfig:
  """A :class:`~lur_jax.models.decoder.DecoderConfig` from a ``config.json`` dict, computing
  in ``dtype`` with ``remat`` and ``attention`` (:class:`~lur_jax.models.decoder.DecoderConfig`).

  Raises:
    ValueError: for an unsupported ``model_type`` or setting, naming it.
  """
  kind = cfg.get("model_type")
  if kind not in MODEL_TYPES:
    raise ValueError(f"config.json model_type={kind!r}; allowed: {', '.join(MODEL_TYPES)}")
  if MODEL_TYPES[kind] == "gpt2":
    act = cfg.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh"):
      raise ValueError(f"config.json activation_function={act!r}; allowed: gelu_new")
    width, heads = cfg["n_embd"], cfg["n_head"]
    config = decoder.DecoderConfig(
        "gpt2", cfg["vocab_size"], width, cfg["n_layer"], heads, heads, width // heads,
        cfg.get("n_inner") or 4 * width, cfg.get("layer_norm_epsilon", 1e-5),
        cfg.get("n_positions", 1024), tied=True, dtype=dtype, remat=remat, model_type=kind)
  else:
    if cfg.get("mlp_bias"):
      raise ValueError("config.json mlp_bias=true; allowed: false (Llama, Mistral, Qwen2)")
    gemma = kind == "gemma"
    act = cfg.get("hidden_act") or ("gelu_pytorch_tanh" if gemma else "silu")
    allowed = ("gelu_pytorch_tanh", "gelu") if gemma else ("silu",)  # Gemma's "gelu": tanh
    if act not in allowed:
      raise ValueError(f"config.json hidden_act={act!r}; allowed: {', '.join(allowed)}")
    width, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    theta, scaling = _rope(cfg)
    window = cfg.get("sliding_window") if kind == "mistral" else None
    config = decoder.DecoderConfig(
        "llama", cfg["vocab_size"], width, cfg["num_hidden_layers"], heads,
        cfg.get("num_key_value_heads") or heads, cfg.get("head_dim") or width // heads,
        cfg["intermediate_size"], cfg.get("rms_norm_eps", 1e-6),
        cfg.get("max_position_embeddings", 2048), theta, scaling,
        qkv_bias=kind == "qwen2" or bool(cfg.get("attention_bias")),
        tied=bool(cfg.get("tie_word_embeddings", gemma)), sliding_window=window or 0,
        norm_offset=gemma, embed_scale=gemma, activation="gelu_tanh" if gemma else "silu",
        dtype=dtype, remat=remat, model_type=kind)
  config = dataclasses.replace(config, attention=attention, attention_chunk=attention_chunk)
  config.check()
  return config


class Tensor(NamedTuple):
  """How one checkpoint tensor becomes (a part of) one parameter, per layer.

  The checkpoint's tensor ``A`` (``name``; ``{i}`` is the layer; ``parts`` parameters fused
  along ``split``) has its axis ``split`` cut at ``offset`` to the parameter's size there and, with ``heads`` > 0, split into
  ``(heads, size / heads)``; the parameter is that array transposed by ``perm``.
  """

  name: str
  perm: tuple
  split: int = 0
  heads: int = 0
  offset: int = 0
  parts: int = 1  # of a fused tensor (GPT-2's c_attn: query, key and value)


def tensors(config: decoder.DecoderConfig, names: set[str] | None = None) -> dict:
  """``{parameter path: Tensor}`` for ``config`` (paths as ``"blocks/query"``). ``names``:
  the checkpoint's tensor names, to pick GPT-2's prefix (``transformer.`` or none)."""
  c = config
  if c.family == "llama":
    layer, p = "model.layers.{i}.", "model."
    out = {"embed": Tensor(f"{p}embed_tokens.weight", (0, 1)),
           "final_norm_scale": Tensor(f"{p}norm.weight", (0,))}
    if not c.tied:
      out["head"] = Tensor("lm_head.weight", (1, 0))
    blocks = {
        "attention_norm_scale": Tensor(f"{layer}input_layernorm.weight", (0,)),
        "query": Tensor(f"{layer}self_attn.q_proj.weight", (2, 0, 1), 0, c.heads),
        "key": Tensor(f"{layer}self_attn.k_proj.weight", (2, 0, 1), 0, c.kv_heads),
        "value": Tensor(f"{layer}self_attn.v_proj.weight", (2, 0, 1), 0, c.kv_heads),
        "out": Tensor(f"{layer}self_attn.o_proj.weight", (1, 2, 0), 1, c.heads),
        "mlp_norm_scale": Tensor(f"{layer}post_attention_layernorm.weight", (0,)),
        "gate": Tensor(f"{layer}mlp.gate_proj.weight", (1, 0)),
        "up": Tensor(f"{layer}mlp.up_proj.weight", (1, 0)),
        "down": Tensor(f"{layer}mlp.down_proj.weight", (1, 0))}
    if c.qkv_bias:
      for name, heads in (("query", c.heads), ("key", c.kv_heads), ("value", c.kv_heads)):
        short = name[0]
        blocks[f"{name}_bias"] = Tensor(f"{layer}self_attn.{short}_proj.bias", (0, 1), 0, heads)
  else:
    p = "transformer." if names is None or "transformer.wte.weight" in names else ""
    layer, w = p + "h.{i}.", c.width
    out = {"embed": Tensor(f"{p}wte.weight", (0, 1)),
           "positions": Tensor(f"{p}wpe.weight", (0, 1)),
           "final_norm_scale": Tensor(f"{p}ln_f.weight", (0,)),
           "final_norm_bias": Tensor(f"{p}ln_f.bias", (0,))}
    blocks = {"attention_norm_scale": Tensor(f"{layer}ln_1.weight", (0,)),
              "attention_norm_bias": Tensor(f"{layer}ln_1.bias", (0,)),
              "out": Tensor(f"{layer}attn.c_proj.weight", (0, 1, 2), 0, c.heads),
              "out_bias": Tensor(f"{layer}attn.c_proj.bias", (0,)),
              "mlp_norm_scale": Tensor(f"{layer}ln_2.weight", (0,)),
              "mlp_norm_bias": Tensor(f"{layer}ln_2.bias", (0,)),
              "mlp_in": Tensor(f"{layer}mlp.c_fc.weight", (0, 1)),
              "mlp_in_bias": Tensor(f"{layer}mlp.c_fc.bias", (0,)),
              "mlp_out": Tensor(f"{layer}mlp.c_proj.weight", (0, 1)),
              "mlp_out_bias": Tensor(f"{layer}mlp.c_proj.bias", (0,))}
    for k, name in enumerate(("query", "key", "value")):  # the fused c_attn, [W, 3W]
      blocks[name] = Tensor(f"{layer}attn.c_attn.weight", (0, 1, 2), 1, c.heads, k * w, 3)
      blocks[f"{name}_bias"] = Tensor(f"{layer}attn.c_attn.bias", (0, 1), 0, c.heads, k * w, 3)
  return {**out, **{f"blocks/{k}": v for k, v in blocks.items()}}


class _Files:
  """The checkpoint's tensors by name, read lazily from one or several safetensors files."""

  def __init__(self, path: str):
    safe_open = extras.require("safetensors", "a Hugging Face checkpoint").safe_open
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.exists(index):
      with open(index) as f:
        shards = json.load(f)["weight_map"]
    elif os.path.exists(os.path.join(path, "model.safetensors")):
      shards = None
    else:
      raise ValueError(f"{path!r} holds no model.safetensors or model.safetensors.index.json; "
                       "allowed: a Hugging Face checkpoint folder saved as safetensors")
    files = sorted(set(shards.values())) if shards else ["model.safetensors"]
    self.handles = {f: safe_open(os.path.join(path, f), framework="numpy") for f in files}
    self.where = shards or {k: "model.safetensors" for k in self.handles[files[0]].keys()}

  def names(self) -> set[str]:
    return set(self.where)

  def slice(self, name: str):
    if name not in self.where:
      raise ValueError(f"checkpoint tensor {name!r} is missing; allowed: a checkpoint with "
                       "every tensor of its model_type")
    try:
      return self.handles[self.where[name]].get_slice(name)
    except (TypeError, ValueError) as e:  # a dtype numpy cannot hold
      raise ValueError(f"checkpoint tensor {name!r}: {e}; allowed: F32, F16 or BF16") from None


def _expected(t: Tensor, shape: tuple) -> tuple:
  """The checkpoint tensor's shape (its part, for a fused tensor) that gives a per-layer
  parameter of ``shape``."""
  split_shape = [0] * len(t.perm)
  for ours, theirs in enumerate(t.perm):
    split_shape[theirs] = shape[ours]
  if t.heads:
    a = t.split
    split_shape[a:a + 2] = [split_shape[a] * split_shape[a + 1]]
  return tuple(split_shape)


def _read(files: _Files, t: Tensor, layer: int, shape: tuple, index: tuple) -> np.ndarray:
  """The slice ``index`` of one layer's parameter (of per-layer ``shape``), reading only
  that slice of the checkpoint tensor."""
  name = t.name.format(i=layer)
  view = files.slice(name)
  theirs = _expected(t, shape)
  want = tuple(n * (t.parts if a == t.split else 1) for a, n in enumerate(theirs))
  if tuple(view.get_shape()) != want:
    raise ValueError(f"checkpoint tensor {name!r} has shape {tuple(view.get_shape())}; "
                     f"allowed: {want} for this config.json")
  split_index = [slice(None)] * len(t.perm)
  for ours, axis in enumerate(t.perm):
    split_index[axis] = index[ours]
  ranges = []
  a = 0
  size = list(theirs)
  for axis in range(len(theirs)):
    if t.heads and axis == t.split:
      head = theirs[axis] // t.heads
      hs = split_index[a].indices(t.heads)
      ranges.append(slice(t.offset + hs[0] * head, t.offset + hs[1] * head))
      a += 2
    else:
      s = split_index[a].indices(size[axis])
      ranges.append(slice(s[0] + (t.offset if axis == t.split else 0),
                          s[1] + (t.offset if axis == t.split else 0)))
      a += 1
  block = np.asarray(view[tuple(ranges)], np.float32)
  if t.heads:
    a = t.split
    head = theirs[a] // t.heads
    block = block.reshape(*block.shape[:a], -1, head, *block.shape[a + 1:])
    d_index = split_index[a + 1]
    block = block[(slice(None),) * (a + 1) + (d_index,)]
  return np.transpose(block, t.perm)


def load_pretrained(path: str, mesh=None, dtype: str = "float32", param_dtype: str = "float32",
                    remat: str = "none", attention: str = "plain", attention_chunk: int = 128):
  """Reads a Hugging Face checkpoint folder into a decoder.

  Args:
    path: a folder with ``config.json`` and safetensors weights.
    mesh: a :class:`jax.sharding.Mesh` to shard the parameters over (by their logical
      names, :data:`lur_jax.training.sharding.RULES`); default: one device.
    dtype: the compute dtype (``float32`` or ``bfloat16``).
    param_dtype: the parameters' dtype (``float32`` or ``bfloat16``).
    remat: ``"none"`` or ``"block"``.
    attention: ``"plain"``, ``"chunked"``, ``"xla"`` or ``"cudnn"``
      (:mod:`lur_jax.models.attention`; ``cudnn`` has no second derivative).
    attention_chunk: keys per chunk for ``chunked``.

  Returns:
    ``(model, params)``: a :class:`~lur_jax.Model` (``apply(params, tokens [B, T]) -> logits
    [B, T, vocab]``) and its parameters.

  Raises:
    ValueError: one line naming what is wrong (no ``config.json``, a ``model_type`` not
    supported, a missing or misshapen tensor, a dtype that cannot be read).
  """
  if param_dtype not in ("float32", "bfloat16"):
    raise ValueError(f"param_dtype={param_dtype!r}; allowed: float32, bfloat16")
  model = read_model(path, dtype, remat, attention, attention_chunk)
  config = model.apply.pretrained[0]
  files = _Files(path)
  table = tensors(config, files.names())
  abstract = jax.eval_shape(model.partitioned, jax.random.key(0))
  mesh = mesh or sharding.make_mesh(devices=1)
  shardings = sharding.param_shardings(abstract, mesh)
  flat = traverse_util.flatten_dict(nn.unbox(abstract), sep="/")
  flat_shardings = traverse_util.flatten_dict(shardings, sep="/")
  out = {}
  for key, leaf in flat.items():
    t = table[key]
    stacked = key.startswith("blocks/")

    def read(index, t=t, leaf=leaf, stacked=stacked):
      if not stacked:
        return _read(files, t, 0, leaf.shape, index).astype(jnp.dtype(param_dtype))
      layers = range(*index[0].indices(leaf.shape[0]))
      return np.stack([_read(files, t, i, leaf.shape[1:], index[1:]) for i in layers]).astype(
          jnp.dtype(param_dtype))
    out[key] = jax.make_array_from_callback(leaf.shape, flat_shardings[key], read)
  return model, traverse_util.unflatten_dict(out, sep="/")


def read_model(path: str, dtype: str = "float32", remat: str = "none", attention: str = "plain",
               attention_chunk: int = 128):
  """The decoder of a checkpoint folder's ``config.json`` alone, no weights read: what the
  planner compiles, and what :func:`load_pretrained` fills.

  Raises:
    ValueError: for a folder without ``config.json``, or a configuration not supported.
  """
  config_path = os.path.join(path, "config.json")
  if not os.path.isfile(config_path):
    raise ValueError(f"{path!r} has no config.json; allowed: a Hugging Face checkpoint folder")
  with open(config_path) as f:
    source = json.load(f)
  return as_model(config_from_hf(source, dtype, remat, attention, attention_chunk), source)


def as_model(config: decoder.DecoderConfig, source: dict | None = None):
  """The decoder of ``config`` as a :class:`~lur_jax.Model`; ``source`` (the checkpoint's
  ``config.json``) rides along for :func:`save_pretrained`."""
  module, partitioned = decoder.build(config)

  def apply(params, tokens):
    return module.apply({"params": params}, tokens)
  apply.pretrained = (config, source)  # what save_pretrained writes back
  return models.stateless(apply, partitioned)


def config_to_hf(config: decoder.DecoderConfig, source: dict | None = None) -> dict:
  """The ``config.json`` of ``config`` (``source``'s other fields kept)."""
  c = config
  out = dict(source or {})
  if c.family == "gpt2":
    out.update(model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=c.vocab,
               n_embd=c.width, n_layer=c.depth, n_head=c.heads, n_inner=c.mlp,
               layer_norm_epsilon=c.norm_eps, n_positions=c.max_positions,
               activation_function="gelu_new", tie_word_embeddings=True)
    return out
  kind = c.model_type or "llama"
  out.update(model_type=kind, architectures=[_ARCHITECTURES[kind]], vocab_size=c.vocab,
             hidden_size=c.width,
             num_hidden_layers=c.depth, num_attention_heads=c.heads,
             num_key_value_heads=c.kv_heads, head_dim=c.head_dim, intermediate_size=c.mlp,
             rms_norm_eps=c.norm_eps, max_position_embeddings=c.max_positions,
             tie_word_embeddings=c.tied,
             hidden_act="gelu_pytorch_tanh" if c.activation == "gelu_tanh" else "silu")
  if "rope_parameters" not in out:
    out["rope_theta"] = c.rope_theta
    out["rope_scaling"] = dict(c.rope_scaling) or None
  if kind == "llama":
    out["attention_bias"] = c.qkv_bias
  return out


def to_hf_tensors(config: decoder.DecoderConfig, tree) -> dict[str, np.ndarray]:
  """A tree like the decoder's parameters (the parameters, or their gradients) as the
  checkpoint's float32 tensors by name: the inverse of :func:`load_pretrained`'s mapping."""
  table = tensors(config)
  parts: dict[str, list] = {}
  for key, value in traverse_util.flatten_dict(tree, sep="/").items():
    t = table[key]
    value = np.asarray(jax.device_get(value), np.float32)
    for layer, array in enumerate(value if key.startswith("blocks/") else [value]):
      block = np.transpose(array, np.argsort(t.perm))
      if t.heads:
        block = block.reshape(*block.shape[:t.split], -1, *block.shape[t.split + 2:])
      parts.setdefault(t.name.format(i=layer), []).append((t.offset, t.split, block))
  out = {}
  for name, pieces in parts.items():
    pieces.sort(key=lambda p: p[0])
    out[name] = np.concatenate([b for _, _, b in pieces], axis=pieces[0][1])
  return out


def save_pretrained(path: str, model, params, dtype: str = "float32") -> None:
  """Writes ``config.json`` and ``model.safetensors`` of a decoder (from
  :func:`load_pretrained` or :func:`as_model`) into the folder ``path``, atomically.

  Args:
    path: the folder (created if missing).
    model: the decoder's :class:`~lur_jax.Model`.
    params: its parameters (sharded or not; gathered tensor by tensor).
    dtype: the tensors' dtype in the file: ``float32``, ``bfloat16`` or ``float16``.

  Returns:
    None.

  Raises:
    ValueError: for a model that is not a pretrained decoder, or a bad ``dtype``.
  """
  save = extras.require("safetensors.numpy", "save_pretrained").save
  if not hasattr(model.apply, "pretrained"):
    raise ValueError("save_pretrained: the model is not a decoder from load_pretrained or "
                     "as_model; allowed: those")
  if dtype not in ("float32", "bfloat16", "float16"):
    raise ValueError(f"dtype={dtype!r}; allowed: float32, bfloat16, float16")
  config, source = model.apply.pretrained
  arrays = {k: np.ascontiguousarray(v.astype(jnp.dtype(dtype)))
            for k, v in to_hf_tensors(config, params).items()}
  os.makedirs(path, exist_ok=True)
  checkpoint.write_json(os.path.join(path, "config.json"), {
      **config_to_hf(config, source), "torch_dtype": dtype})
  checkpoint.write_atomic(os.path.join(path, "model.safetensors"),
                          save(arrays, metadata={"format": "pt"}))

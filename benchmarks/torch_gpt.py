"""lur_jax's transformer in PyTorch, from the same weights: what benchmarks/torch_reference.py
times GradDiff, hvp and exact against (``--models transformer``).

The forward pass is ``lur_jax.models.transformer.Transformer`` written out: pre-LayerNorm
blocks (ε = 1e-6), rotary positions on queries and keys (half-split form), causal softmax
attention with float32 scores, a tanh-approximated GELU MLP, tied embeddings, and the mean
next-token cross-entropy. Weights come as the flat ``{path: tensor}`` dict of the Flax
parameters (``blocks/query/kernel`` is ``[depth, width, heads, head_dim]``).
"""

import math

import torch
import torch.nn.functional as F


def _layer_norm(p, name, x, layer=None):
  scale, bias = p[f"{name}/scale"], p[f"{name}/bias"]
  if layer is not None:
    scale, bias = scale[layer], bias[layer]
  return F.layer_norm(x, x.shape[-1:], scale, bias, eps=1e-6)


def _rotary(x):
  t, half = x.shape[1], x.shape[-1] // 2
  freq = 1.0 / (10_000 ** (torch.arange(half, dtype=x.dtype) / half))
  angle = torch.arange(t, dtype=x.dtype)[:, None] * freq[None, :]
  sin, cos = torch.sin(angle)[None, :, None, :], torch.cos(angle)[None, :, None, :]
  a, b = x[..., :half], x[..., half:]
  return torch.cat([a * cos - b * sin, a * sin + b * cos], -1)


def _block(p, layer, x):
  g = lambda name: p[f"blocks/{name}"][layer]
  h = _layer_norm(p, "blocks/ln_attention", x, layer)
  q, k, v = (torch.einsum("btd,dhe->bthe", h, g(f"{n}/kernel")) for n in ("query", "key", "value"))
  q, k = _rotary(q), _rotary(k)
  scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
  t = x.shape[1]
  causal = torch.tril(torch.ones(t, t, dtype=torch.bool))
  weights = torch.softmax(torch.where(causal, scores, torch.tensor(-1e30, dtype=x.dtype)), -1)
  attended = torch.einsum("bhqk,bkhd->bqhd", weights, v)
  x = x + torch.einsum("bthe,hed->btd", attended, g("out/kernel"))
  h = _layer_norm(p, "blocks/ln_mlp", x, layer)
  h = F.gelu(h @ g("mlp_in/kernel") + g("mlp_in/bias"), approximate="tanh")
  return x + h @ g("mlp_out/kernel") + g("mlp_out/bias")


def loss(p, tokens):
  """The mean next-token cross-entropy of ``tokens [B, T]`` (int64)."""
  x = p["embed/embedding"][tokens]
  for layer in range(p["blocks/query/kernel"].shape[0]):
    x = _block(p, layer, x)
  logits = _layer_norm(p, "ln_final", x) @ p["embed/embedding"].T
  return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                         tokens[:, 1:].reshape(-1))


def graddiff_grads(p, retain, forget, forget_weight):
  """∇[L_r − λ·L_f] (gradient ascent on the forget batch), torch.autograd."""
  names = list(p)
  objective = loss(p, retain) - forget_weight * loss(p, forget)
  return dict(zip(names, torch.autograd.grad(objective, [p[n] for n in names])))


def exact_grads(p, retain, forget, inner_lr, forget_weight):
  """∇J, J = L_r(θ) − λ·L_f(θ − α∇L_r(θ)): torch.autograd with ``create_graph=True``."""
  names = list(p)
  r = loss(p, retain)
  inner = torch.autograd.grad(r, [p[n] for n in names], create_graph=True)
  ahead = {n: p[n] - inner_lr * g for n, g in zip(names, inner)}
  objective = r - forget_weight * loss(ahead, forget)
  return dict(zip(names, torch.autograd.grad(objective, [p[n] for n in names])))


def hvp_grads(p, retain, forget, inner_lr, forget_weight):
  """The same ∇J from a forward-over-reverse Hessian-vector product (``torch.func.jvp`` of
  ``torch.func.grad``), as lur_jax's ``mode="hvp"``."""
  grad_r = torch.func.grad(lambda q: loss(q, retain))
  g = grad_r(p)
  ahead = {n: p[n] - inner_lr * g[n] for n in p}
  v = torch.func.grad(lambda q: -forget_weight * loss(q, forget))(ahead)
  _, hv = torch.func.jvp(grad_r, (p,), (v,))
  return {n: g[n] + v[n] - inner_lr * hv[n] for n in p}

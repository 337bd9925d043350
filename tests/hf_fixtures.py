"""Writes the tiny Hugging Face checkpoints of ``tests/fixtures/hf/`` with ``transformers``.

    pip install -e ".[hf]"     # torch and transformers: for this script and its slow test
    python tests/hf_fixtures.py

One folder per architecture lur_jax reads (Llama 3 with grouped-query attention and
``llama3`` rope scaling, Llama 2 with an untied head, Mistral, Qwen2 with query/key/value
biases, GPT-2), each a randomly initialised model of a few thousand parameters saved by
``save_pretrained`` (``config.json``, ``model.safetensors``), with ``logits.npy``: the float32
logits ``transformers`` computes for ``tokens.npy``. ``tests/test_pretrained.py`` checks
lur_jax's logits against them without torch. Deterministic: torch's seed is fixed.
"""

import json
import os

import numpy as np
import torch
import transformers

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf")
TINY = {"vocab_size": 96, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "max_position_embeddings": 64}
CONFIGS = {
    "llama3": transformers.LlamaConfig(**TINY, num_key_value_heads=2, tie_word_embeddings=True,
                                       rope_theta=500_000.0, rms_norm_eps=1e-5,
                                       rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                     "low_freq_factor": 1.0,
                                                     "high_freq_factor": 4.0,
                                                     "original_max_position_embeddings": 16}),
    "llama2": transformers.LlamaConfig(**TINY, num_key_value_heads=4, tie_word_embeddings=False),
    "mistral": transformers.MistralConfig(**TINY, num_key_value_heads=2, sliding_window=64),
    "qwen2": transformers.Qwen2Config(**TINY, num_key_value_heads=2, tie_word_embeddings=True),
    "gpt2": transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4, n_positions=64),
    "gemma": transformers.GemmaConfig(**TINY, num_key_value_heads=2, head_dim=8),
}


def tokens(vocab: int) -> np.ndarray:
  return np.random.default_rng(0).integers(0, vocab, (2, 12)).astype(np.int32)


def main():
  torch.manual_seed(0)
  for name, config in CONFIGS.items():
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random weights of a visible size (GPT-2's init is tiny)
      for p in model.parameters():
        p.normal_(0.0, 0.2)
    out = os.path.join(HERE, name)
    model.save_pretrained(out, safe_serialization=True)
    x = tokens(config.vocab_size)
    with torch.no_grad():
      logits = model(torch.as_tensor(x, dtype=torch.long)).logits.float().numpy()
    np.save(os.path.join(out, "tokens.npy"), x)
    np.save(os.path.join(out, "logits.npy"), logits)
    for extra in ("generation_config.json",):
      if os.path.exists(os.path.join(out, extra)):
        os.remove(os.path.join(out, extra))
    with open(os.path.join(out, "config.json")) as f:
      written = json.load(f)
    print(name, written["model_type"], sum(p.numel() for p in model.parameters()), "parameters",
          "transformers", transformers.__version__, "torch", torch.__version__)


if __name__ == "__main__":
  main()

"""Writes ``tests/fixtures/tofu_hf/``: TOFU-format files, a tokenizer and two tiny Llama
checkpoints, all with lur_jax itself (no torch), for ``configs/tofu_hf_smoke.py``.

    python tests/tofu_hf_fixtures.py

``data/`` holds TOFU's files for 20 generated authors × 4 questions (``forget01/05/10.json``,
``retain99/95/90.json``, ``holdout01/05/10.json``, their ``_perturbed`` files,
``retain_perturbed.json``, and the generated world's facts split into
``world_facts_perturbed.json`` and ``real_authors_perturbed.json``), in TOFU's JSON-lines
layout. ``full/`` is a 2-layer Llama (grouped-query attention) fine-tuned on every author
(TOFU's "full" model), ``retain/`` the same from the same start on forget10's retain authors
only (the retain model); both folders carry the BPE tokenizer (``tokenizer.json``,
``tokenizer_config.json`` with Llama 3.2's chat template, tools left out, so the
Llama-3.2-1B-Instruct preset's chat path runs on it too). Deterministic: fixed seeds, the same files every time.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lur_jax.lm import losses, prompt, tofu, tokenizer as tokenizer_lib
from lur_jax.models import hf
from lur_jax.training import checkpoint

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tofu_hf")
AUTHORS, QUESTIONS, SEQ_LEN, VOCAB = 20, 4, 64, 768
# configs/tofu_hf_smoke.py's model.template: the answer starts a line, so the prompt's
# tokens are those the question-and-answer sequence starts with (after "Answer: " a
# byte-level BPE joins the space to the answer's first word, and a prompt tokenized alone
# ends in a lone space token the model never saw there)
TEMPLATE = prompt.Template("Question: ", "\n", "Answer:\n", "\n")
# Llama 3.2's chat template without its tool calls (the date header, the system turn, the turns)
LLAMA3_CHAT = (
    "{{- bos_token }}\n"
    "{%- if not date_string is defined %}\n"
    "    {%- set date_string = strftime_now(\"%d %b %Y\") %}\n"
    "{%- endif %}\n"
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {%- set system_message = messages[0]['content']|trim %}\n"
    "    {%- set messages = messages[1:] %}\n"
    "{%- else %}\n"
    "    {%- set system_message = \"\" %}\n"
    "{%- endif %}\n"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}\n"
    "{{- \"Cutting Knowledge Date: December 2023\\n\" }}\n"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}\n"
    "{{- system_message }}\n"
    "{{- \"<|eot_id|>\" }}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}\n"
    "{%- endif %}\n")


CONFIG = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 32,
          "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "max_position_embeddings": SEQ_LEN, "rms_norm_eps": 1e-5,
          "rope_theta": 10000.0, "tie_word_embeddings": True, "torch_dtype": "float32"}


def rows(qa, perturbed: bool) -> str:
  keys = tofu.FIELDS if perturbed else ("question", "answer")
  return "".join(json.dumps({k: list(v) if isinstance(v, tuple) else v
                             for k, v in zip(tofu.FIELDS, q) if k in keys}) + "\n" for q in qa)


def write_data(folder: str, qa, world) -> None:
  for split in tofu.SPLITS:
    forget, retain, holdout = tofu.split(qa, split, AUTHORS)
    nn = split[len("forget"):]
    for name, part, pert in ((f"{split}.json", forget, False), (f"{split}_perturbed.json",
                                                                  forget, True),
                             (f"retain{100 - int(nn)}.json", retain, False),
                             (f"holdout{nn}.json", holdout, False)):
      checkpoint.write_atomic(os.path.join(folder, name), rows(part, pert))
  _, retain, _ = tofu.split(qa, "forget10", AUTHORS)
  checkpoint.write_atomic(os.path.join(folder, "retain_perturbed.json"),
                          rows(retain[:16], True))
  checkpoint.write_atomic(os.path.join(folder, "world_facts_perturbed.json"),
                          rows(world[:18], True))
  checkpoint.write_atomic(os.path.join(folder, "real_authors_perturbed.json"),
                          rows(world[18:], True))


def train(model, params, tokens, labels, steps: int, seed: int):
  tx = optax.adamw(3e-3, weight_decay=0.0)
  loss = lambda p, x, y: losses.answer_loss(model.apply(p, x), x, y)

  @jax.jit
  def step(p, s, x, y):
    value, g = jax.value_and_grad(loss)(p, x, y)
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, value
  state, rng = tx.init(params), np.random.default_rng(seed)
  for _ in range(steps):
    idx = rng.choice(len(tokens), min(32, len(tokens)), replace=False)
    params, state, value = step(params, state, tokens[idx], labels[idx])
  print(f"  final loss {float(value):.3f}")
  return params


def main() -> None:
  qa = tofu.generate(AUTHORS, QUESTIONS, perturbed=3, holdout=2, seed=0)
  world = tofu.world()
  data_dir = os.path.join(HERE, "data")
  write_data(data_dir, qa, world)
  texts = tokenizer_lib.texts(qa + world) + [prompt.text(TEMPLATE, q.question) for q in qa]
  tok = tokenizer_lib.train(texts, VOCAB)
  pretrained = prompt.Pretrained(tok, tok.token_to_id(tokenizer_lib.EOS),
                                 tok.token_to_id(tokenizer_lib.PAD))
  model = hf.as_model(hf.config_from_hf({**CONFIG, "vocab_size": tok.get_vocab_size()}))
  start = jax.jit(model.init)(jax.random.key(0))  # the parameters
  _, retain, _ = tofu.split(qa, "forget10", AUTHORS)
  trained = [q for q in qa if q.author < AUTHORS]
  for name, part in (("full", trained), ("retain", retain)):
    pairs = [prompt.encode(pretrained, TEMPLATE, q.question, q.answer, SEQ_LEN)
             for q in part + world]
    tokens, labels = (np.stack(a) for a in zip(*pairs))
    longest = int(max(np.flatnonzero(row)[-1] + 1 for row in labels))
    print(f"{name}: {len(tokens)} sequences, the longest {longest} tokens")
    params = train(model, start, jnp.asarray(tokens), jnp.asarray(labels), 600, 1)
    folder = os.path.join(HERE, name)
    source = {**CONFIG, "vocab_size": tok.get_vocab_size(),
              "eos_token_id": pretrained.eos, "pad_token_id": pretrained.pad}
    hf.save_pretrained(folder, hf.as_model(hf.config_from_hf(source), source), params)
    checkpoint.write_atomic(os.path.join(folder, "tokenizer.json"), tok.to_str())
    checkpoint.write_json(os.path.join(folder, "tokenizer_config.json"), {
        "eos_token": tokenizer_lib.EOS, "pad_token": tokenizer_lib.PAD,
        "tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": SEQ_LEN,
        "chat_template": LLAMA3_CHAT})


if __name__ == "__main__":
  main()

"""A pretrained model's tokenizer and prompt format: open-unlearning's tag path and chat path
(the tokenizer's Jinja chat template; against transformers' apply_chat_template in the slow
suite), the answer alone labelled, EOS appended, the answer decoded back."""

import json

import numpy as np
import pytest
from tofu_hf_fixtures import LLAMA3_CHAT
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from lur_jax.lm import prompt

SPECIAL = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]


def _checkpoint(tmp_path, config=True, chat_template=None):
  """A tiny byte-level BPE with Llama 3's special tokens and a BOS post-processor."""
  tok = Tokenizer(models.BPE())
  tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
  from tokenizers import decoders  # pylint: disable=g-import-not-at-top
  tok.decoder = decoders.ByteLevel()
  tok.train_from_iterator(["Who wrote the book? Basil Hollow wrote it.", "system user assistant"],
                          trainers.BpeTrainer(vocab_size=300, special_tokens=SPECIAL,
                                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
  bos = tok.token_to_id("<|begin_of_text|>")
  tok.post_processor = processors.TemplateProcessing(
      single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
  tok.save(str(tmp_path / "tokenizer.json"))
  if config:
    settings = {"eos_token": "<|eot_id|>", "bos_token": "<|begin_of_text|>",
                "tokenizer_class": "PreTrainedTokenizerFast"}
    if chat_template:
      settings["chat_template"] = chat_template
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(settings))
  return prompt.load_tokenizer(str(tmp_path))


def test_a_pair_is_open_unlearnings_tag_path(tmp_path):
  tok = _checkpoint(tmp_path)
  template = prompt.PRESETS["Llama-3.2-1B-Instruct"]._replace(chat=False)  # the tags
  tokens, labels = prompt.encode(tok, template, "Who wrote the book?", "Basil Hollow wrote it.", 96)
  text = (template.system + template.user_start + "Who wrote the book?" + template.user_end
          + template.asst_start)
  whole = tok.tokenizer.encode(text + "Basil Hollow wrote it.").ids + [tok.eos]
  prompt_len = len(tok.tokenizer.encode(text).ids)
  assert tokens[:len(whole)].tolist() == whole and (tokens[len(whole):] == tok.pad).all()
  assert labels.tolist() == [prompt_len <= i < len(whole) for i in range(96)]
  assert tokens[0] == tok.tokenizer.token_to_id("<|begin_of_text|>")  # the tokenizer's BOS
  assert prompt.decode(tok, tokens, labels) == "Basil Hollow wrote it."
  assert tok.pad == tok.eos == tok.tokenizer.token_to_id("<|eot_id|>")


def test_truncation_keeps_eos_and_a_too_short_array_is_refused(tmp_path):
  tok = _checkpoint(tmp_path)
  template = prompt.PRESETS["Llama-2-7b-hf"]
  tokens, labels = prompt.encode(tok, template, "Who wrote the book?", "Basil Hollow wrote it.",
                                 16, max_length=12)
  assert tokens[12] == tok.eos and labels[12] and not labels[13:].any()
  with pytest.raises(ValueError, match="of 13 tokens .'Who wrote the book.'.; allowed: at most 8"):
    prompt.encode(tok, template, "Who wrote the book?", "Basil Hollow wrote it.", 8,
                  max_length=12)


def test_every_preset_holds_open_unlearnings_tags():
  assert set(prompt.PRESETS) >= {"Llama-2-7b-chat-hf", "Llama-3.1-8B-Instruct",
                                 "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct",
                                 "Phi-3.5-mini-instruct", "Qwen2.5-1.5B-Instruct",
                                 "Qwen2.5-3B-Instruct", "Qwen2.5-7B-Instruct", "gemma-7b-it",
                                 "zephyr-7b-beta"}
  assert prompt.PRESETS["Qwen2.5-7B-Instruct"].asst_start == "<|im_start|>assistant\n"
  assert prompt.PRESETS["Llama-2-7b-chat-hf"][:5] == ("[INST] ", " [/INST]", "", " ", "")
  chat = {k for k, t in prompt.PRESETS.items() if t.chat}  # apply_chat_template: True
  assert chat == {"Llama-3.1-8B-Instruct", "Llama-3.2-1B-Instruct", "Llama-3.2-3B-Instruct",
                  "Phi-3.5-mini-instruct", "Qwen2.5-1.5B-Instruct", "Qwen2.5-3B-Instruct",
                  "Qwen2.5-7B-Instruct", "gemma-7b-it", "zephyr-7b-beta"}
  assert prompt.PRESETS["Llama-3.2-1B-Instruct"].date_string == "10 Apr 2025"


QA = ("Who wrote the book?", "Basil Hollow wrote it.")
RENDERED = ("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 10 Apr 2025\n\nYou are a helpful assistant."
            "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWho wrote the book?"
            "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_the_chat_path_renders_the_tokenizers_template(tmp_path):
  tok = _checkpoint(tmp_path, chat_template=LLAMA3_CHAT)
  template = prompt.PRESETS["Llama-3.2-1B-Instruct"]
  tokens, labels = prompt.encode(tok, template, *QA, 128)
  whole = tok.tokenizer.encode(RENDERED + QA[1] + "<|eot_id|>", add_special_tokens=False).ids
  start = len(tok.tokenizer.encode(RENDERED, add_special_tokens=False).ids)
  assert tokens[:len(whole)].tolist() == whole  # ends in <|eot_id|>, the EOS: none appended
  assert labels.tolist() == [start <= i < len(whole) for i in range(128)]
  assert prompt.prompt_ids(tok, template, QA[0]) == whole[:start]
  assert prompt.decode(tok, tokens, labels) == QA[1]
  with pytest.raises(ValueError, match="the tokenizer has no chat_template"):
    prompt.encode(tok._replace(chat_template=None), template, *QA, 128)


@pytest.mark.slow  # needs transformers: pip install -e ".[hf]"
def test_the_chat_path_equals_transformers_apply_chat_template(tmp_path):
  transformers = pytest.importorskip("transformers")
  tok = _checkpoint(tmp_path, chat_template=LLAMA3_CHAT)
  theirs = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
  template = prompt.PRESETS["Llama-3.2-1B-Instruct"]
  chat = [{"role": "system", "content": template.system_prompt},
          {"role": "user", "content": QA[0]}, {"role": "assistant", "content": QA[1]}]
  want = theirs.apply_chat_template(chat, tokenize=True, date_string=template.date_string)
  want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
  want_prompt = theirs.apply_chat_template(chat[:-1], tokenize=True, add_generation_prompt=True,
                                           date_string=template.date_string)
  want_prompt = want_prompt["input_ids"] if hasattr(want_prompt, "keys") else want_prompt
  tokens, labels = prompt.encode(tok, template, *QA, 128)
  assert tokens[:len(want)].tolist() == list(want)
  assert prompt.prompt_ids(tok, template, QA[0]) == list(want_prompt)
  assert int(labels.sum()) == len(want) - len(want_prompt)


def test_a_checkpoint_without_its_tokenizer_or_eos_is_one_line(tmp_path):
  with pytest.raises(ValueError, match="has no tokenizer.json; allowed: a checkpoint folder"):
    prompt.load_tokenizer(str(tmp_path))
  with pytest.raises(ValueError, match="no EOS token in tokenizer_config.json or config.json"):
    _checkpoint(tmp_path, config=False)


def test_eos_as_an_id_in_config_json(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": [1, 2], "pad_token_id": 0}))
  tok = _checkpoint(tmp_path, config=False)
  assert (tok.eos, tok.pad) == (1, 0)
  np.testing.assert_array_equal(prompt.encode(tok, prompt.PRESETS["Llama-2-7b-hf"], "a", "b",
                                              32)[0][-1], 0)

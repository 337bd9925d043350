"""A tokenizer's own chat template, rendered as ``transformers``' ``apply_chat_template``
renders it: the Jinja of ``tokenizer_config.json``'s ``chat_template`` (or the
``chat_template.jinja`` beside it), in a sandboxed environment with ``trim_blocks`` and
``lstrip_blocks``, the ``loopcontrols`` extension, and the globals chat templates call
(``raise_exception``, ``strftime_now``, a ``tojson`` that does not escape HTML); the
tokenizer's special tokens (``bos_token``, ``eos_token``, ...) are variables of the template.
open-unlearning builds its chat-model inputs this way (``apply_chat_template: True``).
"""

from __future__ import annotations

import datetime
import json
import os

from lur_jax import extras


def read(path: str) -> str | None:
  """The chat template of a tokenizer folder, or ``None`` when it has none.

  Args:
    path: a folder with ``chat_template.jinja`` or a ``tokenizer_config.json`` holding
      ``chat_template`` (a string, or a list of ``{"name", "template"}``: the ``default``).

  Returns:
    The template's source.
  """
  jinja = os.path.join(path, "chat_template.jinja")
  if os.path.isfile(jinja):
    with open(jinja) as f:
      return f.read()
  config = os.path.join(path, "tokenizer_config.json")
  if not os.path.isfile(config):
    return None
  with open(config) as f:
    template = json.load(f).get("chat_template")
  if isinstance(template, list):
    template = {t.get("name"): t.get("template") for t in template}.get("default")
  return template


def _raise(message):
  jinja2 = extras.require("jinja2", "a chat template")
  raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                    sort_keys=sort_keys)


def render(template: str, messages: list[dict], add_generation_prompt: bool = False,
           **variables) -> str:
  """The text of ``messages`` under ``template``.

  Args:
    template: a chat template's Jinja source (:func:`read`).
    messages: ``[{"role": "system" | "user" | "assistant", "content": str}, ...]``.
    add_generation_prompt: end with the assistant's turn opened (what generation continues).
    **variables: the template's other variables: the tokenizer's special tokens, and what a
      template reads, as ``date_string``.

  Returns:
    The rendered conversation.

  Raises:
    ValueError: when the template fails or raises (its message).
  """
  jinja2 = extras.require("jinja2", "a chat template")
  from jinja2 import ext, sandbox  # pylint: disable=g-import-not-at-top  (installed: above)
  env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                              extensions=[ext.loopcontrols])
  env.filters["tojson"] = _tojson
  env.globals.update(raise_exception=_raise, strftime_now=lambda fmt: datetime.datetime.now(
  ).strftime(fmt))
  try:
    return env.from_string(template).render(messages=messages, tools=None, documents=None,
                                            add_generation_prompt=add_generation_prompt,
                                            **variables)
  except jinja2.exceptions.TemplateError as e:
    raise ValueError(f"the tokenizer's chat template: {e}") from None

"""Every config key a study reads: what it means and the values allowed.

The documentation's key table is rendered from ``KEYS`` and its defaults read from the
shipped configs, and ``tests/test_docs.py`` checks that every key of every shipped config
is here, so the table cannot go stale. Allowed values that the code enumerates come from
the code's own constants.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from flax import traverse_util

from lur_jax import models
from lur_jax.core import data, losses, lur, methods, train
from lur_jax.models import diffusion
from lur_jax.study import datasets


class Key(NamedTuple):
  """One config key.

  Attributes:
    name: the dotted path; ``<method>`` stands for any name of ``METHODS``.
    allowed: the values allowed, in words.
    meaning: what it does.
    default: the value used when a config leaves the key out (``None``: every
      config must hold it; its default is read from the shipped configs).
    task: ``"all"``, ``"classification"``, ``"diffusion"``, ``"language"`` or ``"tofu"``.
  """

  name: str
  allowed: str
  meaning: str
  default: object = None
  task: str = "all"


def _names(values) -> str:
  return ", ".join(f"`{v}`" for v in values)


_POSITIVE_INT, _POSITIVE = "an int > 0", "a number > 0"


def _recipe(section: str, whose: str) -> list[Key]:
  """The optimiser recipe's keys of ``train`` or ``unlearn``."""
  return [Key(f"{section}.epochs", _POSITIVE_INT, f"epochs of {whose}"),
          Key(f"{section}.lr", _POSITIVE, "the learning rate"),
          Key(f"{section}.batch_size", _POSITIVE_INT, "the global (retain) batch size"),
          Key(f"{section}.momentum", "a number >= 0", "SGD momentum"),
          Key(f"{section}.weight_decay", "a number >= 0", "weight decay (coupled for SGD)"),
          Key(f"{section}.optimizer", _names(train.OPTIMIZERS), "SGD with momentum, or AdamW",
              "sgd"),
          Key(f"{section}.schedule", _names(train.SCHEDULES), "the learning rate: constant, or "
              "a 5% linear warm-up then a cosine decay to 0", "constant")]
_LAYERS = "`all`, or comma-separated layer names (`layer3` selects `layer3_0`, `layer3_1`, ...)"
_FRACTION = "a number in (0, 1)"

KEYS: tuple[Key, ...] = (
    Key("smoke", "true or false", "a smoke run: its table and results.json say first that "
        "its numbers are not meaningful", False),
    Key("task", "`classification`, `diffusion`, `language`, `tofu`",
        "the task plug-in (`lur_jax.TASKS`)", "classification"),
    Key("seed", "an int >= 0", "determines the data split, forget set, inits and data orders"),
    Key("devices", "0 (all) or 1 .. the devices JAX sees", "devices to use", 0),
    Key("mesh.data", "an int >= 1, or −1 for the rest",
        "devices on the `data` axis: batches split over data × fsdp and must divide by it", -1),
    Key("mesh.fsdp", "an int >= 1, or −1 for the rest",
        "devices that shard parameters and optimiser state (and the batch): "
        "[sharding](sharding.md)", 1),
    Key("mesh.tensor", "an int >= 1, or −1 for the rest",
        "tensor parallelism, for models whose parameters carry logical names (the transformer)",
        1),
    Key("methods", f"comma-separated: {_names(methods.METHODS)}",
        "the methods to run, in order (a DDPM takes " + _names(methods.for_task("diffusion"))
        + ")"),
    Key("distributed.coordinator", "`host:port` or empty",
        "process 0's address for a multi-process run (empty: `JAX_COORDINATOR_ADDRESS`)", ""),
    Key("distributed.num_processes", "an int >= 0", "processes (0: `JAX_NUM_PROCESSES`)", 0),
    Key("distributed.process_id", "−1 or 0 .. num_processes − 1",
        "this process's index (−1: `JAX_PROCESS_ID`)", -1),
    Key("distributed.auto", "true or false", "let JAX detect a TPU pod slice or SLURM/MPI job",
        False),
    Key("data.name", f"{_names(datasets.DATASETS)}, or `package.module:factory`",
        "the data set (your own: [Your own model or data](own_model_data.md))"),
    Key("data.dir", "a folder, or empty", "`fashion_mnist`: the folder of the IDX files", ""),
    Key("data.tfds_data_dir", "a folder, or empty", "`tfds:*`: TFDS's data dir", ""),
    Key("data.augment", "true or false", "random crop (padding 4) and flip of training batches",
        False),
    Key("data.train_limit", "an int >= 0", "keep this many training examples (0: all)", 0),
    Key("data.test_limit", "an int >= 0", "keep this many test examples (0: all)", 0),
    Key("model.name", f"{_names(models.MODELS)} (`unet` for a DDPM), `pretrained` (TOFU on "
        "a Hugging Face checkpoint), or `package.module:factory`", "the model"),
    Key("model.checkpoint", "a Hugging Face checkpoint folder (`config.json`, safetensors)",
        "`pretrained`: the original model (TOFU's full model); `config.json` alone plans",
        "", "tofu"),
    Key("model.tokenizer", "a folder with `tokenizer.json`, or empty",
        "`pretrained`: the tokenizer (empty: `model.checkpoint`'s)", "", "tofu"),
    Key("model.template", "a preset of `lur_jax.lm.prompt.PRESETS`, or a mapping of "
        "`user_start`, `user_end`, `asst_start`, `asst_end`, `system`",
        "`pretrained`: the prompt format (open-unlearning's `template_args`)", "", "tofu"),
    *(Key(f"model.template.{field}", "a string", f"`pretrained`, a template of your own: "
          f"{what}", "", "tofu")
      for field, what in (("user_start", "before the question"), ("user_end", "after it"),
                          ("asst_start", "before the answer"), ("asst_end", "after it"),
                          ("system", "the system prompt, first"),
                          ("chat", "`true`: render with the tokenizer's chat template"),
                          ("system_prompt", "the chat path's system message"),
                          ("date_string", "the chat path's `date_string`"))),
    Key("model.param_dtype", "`float32`, `bfloat16`", "`pretrained`: the parameters' dtype",
        "float32", "tofu"),
    Key("model.hidden", "ints > 0", "`mlp`: hidden widths; `cnn`: the dense layer's width",
        "from the model: `mlp` (128, 128), `cnn` 128", "classification"),
    Key("model.channels", "ints > 0 (the U-Net: multiples of 8)",
        "`cnn` and the U-Net: widths of the conv levels"),
    Key("model.norm", "true or false", "`cnn`: BatchNorm after each convolution", False,
        "classification"),
    Key("model.width", _POSITIVE_INT,
        "`resnet18`: channels of `layer1`; the transformer: its embedding width", 64),
    Key("model.vocab", _POSITIVE_INT, "the transformer's vocabulary", 256, "language"),
    Key("model.depth", _POSITIVE_INT, "the transformer's blocks", 2, "language"),
    Key("model.heads", "an int > 0 dividing `model.width` into heads of an even size",
        "the transformer's attention heads", 4, "language"),
    Key("model.seq_len", _POSITIVE_INT, "the transformer's longest sequence", 64, "language"),
    Key("model.mlp_ratio", _POSITIVE_INT, "the transformer's MLP width over `model.width`", 4,
        "language"),
    Key("model.dtype", "`float32`, `bfloat16`", "the transformer's compute dtype (parameters "
        "stay float32)", "float32", "language"),
    Key("model.remat", "`none`, `block`", "rematerialise each transformer block in the "
        "backward pass (and in LUR `exact`'s second backward pass)", "none", "language"),
    Key("model.scan_unroll", _POSITIVE_INT, "transformer blocks per iteration of the layer "
        "scan", 1, "language"),
    Key("model.attention", "`plain`, `chunked`, `xla`, `cudnn` (first-order methods only)",
        "the transformer's (and `pretrained`'s) attention: the scores whole, keys in chunks "
        "with an online softmax "
        "(memory linear in the sequence), `jax.nn.dot_product_attention`'s XLA or fused cuDNN "
        "kernel", "plain", "language"),
    Key("model.attention_chunk", _POSITIVE_INT, "keys per chunk of `chunked` attention (the "
        "transformer and `pretrained`)", 128,
        "language"),
    Key("model.emb_dim", _POSITIVE_INT, "the U-Net's time and class embedding width", 128,
        "diffusion"),
    *_recipe("train", "the original model and `retrain`"),
    Key("forget.kind", _names(data.FORGET_KINDS), "how the forget set is drawn"),
    Key("forget.fraction", _FRACTION, "`random`: the fraction of D forgotten"),
    Key("forget.classes", "comma-separated class indices", "`class`: the classes forgotten"),
    Key("forget.indices", "comma-separated indices, or a `.txt`/`.npy` file",
        "`indices`: the examples of D forgotten"),
    Key("forget.split", "comma-separated: `forget01`, `forget05`, `forget10`",
        "`authors`: the TOFU forget splits, each a study of its own under `out/<split>/`",
        None, "tofu"),
    Key("tofu.authors", _POSITIVE_INT, "fictitious authors trained on (TOFU: 200)", None,
        "tofu"),
    Key("tofu.questions", "1 .. 20", "questions per author (TOFU: 20)", None, "tofu"),
    Key("tofu.paraphrases", "true or false", "train on each question's paraphrased answer "
        "too (a second sequence per pair)", None, "tofu"),
    Key("tofu.perturbed", _POSITIVE_INT, "wrong answers per question (TOFU: 5)", None, "tofu"),
    Key("tofu.data_seed", "an int >= 0", "the generator's seed (the data, apart from `seed`)",
        None, "tofu"),
    Key("tofu.pretrain_epochs", _POSITIVE_INT, "epochs on the general-knowledge set before "
        "the authors", None, "tofu"),
    Key("tofu.npo_beta", _POSITIVE, "NPO's β (every method with the `npo` objective)", None,
        "tofu"),
    Key("tofu.simnpo_beta", _POSITIVE, "SimNPO's β", None, "tofu"),
    Key("tofu.simnpo_delta", "a number", "SimNPO's δ", None, "tofu"),
    Key("tofu.eval_retain", _POSITIVE_INT, "retain pairs scored for model utility", None,
        "tofu"),
    Key("tofu.max_new_tokens", _POSITIVE_INT, "the most tokens generated per answer (ROUGE)",
        200, "tofu"),
    Key("tofu.eval_batch_size", _POSITIVE_INT, "examples per compiled evaluation call (each "
        "holds batch × seq_len × vocab logits; open-unlearning's is 32)", 256, "tofu"),
    Key("tofu.data_dir", "a folder of TOFU's JSON files, or empty",
        "`pretrained`: TOFU's own files (empty: the generated authors)", "", "tofu"),
    Key("tofu.retain_checkpoint", "a Hugging Face checkpoint folder, or empty",
        "`pretrained`: the retain model, scored as the `retrain` row", "", "tofu"),
    Key("tofu.retain_logs", "a `TOFU_EVAL.json`, or empty", "`pretrained`: the retain "
        "model's evaluation logs (open-unlearning's `retain_logs_path`)", "", "tofu"),
    Key("tofu.export", "true or false", "`pretrained`: write each unlearned model as a "
        "Hugging Face checkpoint under `out/<split>/hf/<method>/`", True, "tofu"),
    Key("eval.split", "`test`, `val`", "where TA and MIA are measured (`val` for tuning)"),
    Key("eval.forget_samples", _POSITIVE_INT, "images generated for the forgotten classes",
        None, "diffusion"),
    Key("eval.kept_samples", _POSITIVE_INT, "images generated per kept class", None,
        "diffusion"),
    Key("checkpoint.every", "an int >= 0", "save the training state every this many steps "
        "(0: never)", 500),
    Key("checkpoint.keep", "an int >= 1", "checkpoints kept per run", 3),
    *_recipe("unlearn", "every unlearning method, unless its own section says"),
    Key("unlearn.forget_batch_size", _POSITIVE_INT, "the global forget batch size"),
    Key("unlearn.iterate", "`retain`, `forget`", "the set every method's epoch walks (the "
        "other cycles alongside)", "the method's own"),
    *(Key(f"<method>.{k.name.split('.')[1]}", k.allowed, "a method's own value (any `unlearn` "
          "key; `train` for `retrain`)", "from `unlearn`")
      for k in _recipe("unlearn", "") + [Key("unlearn.forget_batch_size", _POSITIVE_INT, "")]),
    Key("graddiff.forget_weight", _POSITIVE, "λ in CE_r − λ·CE_f"),
    Key("graddiff.forget_objective", _names(losses.FORGET_OBJECTIVES) + "; on TOFU `ga`, "
        "`npo`, `simnpo`",
        "the forget term: −CE (`ga`) or CE to random wrong labels (`rl`)", "ga"),
    Key("<method>.retain_loss", "`nll`; on TOFU also `kl`", "GradDiff's, NPO's and "
        "SimNPO's retain term: the NLL, or KL to the model before unlearning", "nll"),
    Key("<method>.iterate", "`retain`, `forget`", "one method's own (`unlearn.iterate`)",
        "from `unlearn`"),
    Key("l1_sparse.alpha", _POSITIVE, "α of α_t‖θ‖₁, decaying linearly to 0",
        None, "classification"),
    Key("salun.gamma", _FRACTION, "the fraction of weights updated (top by saliency)"),
    Key("salun.layers", _LAYERS, "where the saliency mask is drawn"),
    Key("shs.sparsity", _FRACTION, "the fraction of the chosen layers' weights kept by the "
        "trim", None, "classification"),
    Key("shs.layers", _LAYERS, "the layers trimmed", None, "classification"),
    Key("shs.forget_weight", _POSITIVE, "λ of the repair's CE_r − λ·CE_f", None,
        "classification"),
    Key("lur.forget_objective", _names(losses.FORGET_OBJECTIVES) + "; on TOFU `ga`, `npo`, "
        "`simnpo`", "the unlearning loss L_u"),
    Key("lur.lookahead", _names(lur.LOOKAHEADS), "which loss the virtual steps descend"),
    Key("lur.inner_lr", _POSITIVE, "α, the virtual steps' learning rate"),
    Key("lur.inner_steps", _POSITIVE_INT, "K, the number of virtual steps"),
    Key("lur.retain_weight", "a number", "w_r"),
    Key("lur.forget_weight", "a number", "w_u"),
    Key("lur.mode", _names(lur.MODES), "how ∇J is computed ([the functional API]"
        "(functional_api.md))"),
    Key("lur.remat", "true or false", "`exact`: rematerialise each virtual step"),
    Key("lur.diagnostics", "true or false", "record the gradient cosine at θ every step"),
    Key("lur_snip.<lur key>", "as the `lur` key", "`lur_snip` runs LUR with the `lur` section "
        "laid under its own", "from `lur`", "classification"),
    Key("lur_npo.<lur key>", "as the `lur` key", "`lur_npo` and `lur_simnpo`: LUR with the "
        "`npo` or `simnpo` objective, the `lur` section laid under their own", "from `lur`",
        "tofu"),
    Key("lur_snip.sparsity", _FRACTION, "the trim's kept fraction", None, "classification"),
    Key("lur_snip.layers", _LAYERS, "the layers trimmed", None, "classification"),
    Key("diffusion.steps", "an int in [2, 100000)", "T, the forward process's steps", None,
        "diffusion"),
    Key("diffusion.beta_start", "a number in [1e-8, 1), < beta_end", "β_0", None, "diffusion"),
    Key("diffusion.beta_end", "a number in [1e-8, 1)", "β_{T−1}", None, "diffusion"),
    Key("diffusion.p_uncond", "a number in [0, 1)", "label dropout (classifier-free guidance)",
        None, "diffusion"),
    Key("diffusion.guidance", "a number in [0, 100]", "the guidance weight when sampling",
        None, "diffusion"),
    Key("diffusion.sampler", _names(diffusion.SAMPLERS), "the sampler", None, "diffusion"),
    Key("diffusion.sample_steps", "an int in [1, steps]", "DDIM's steps", None, "diffusion"),
    Key("diffusion.eta", "a number in [0, 1]", "DDIM's noise (0: deterministic)", None,
        "diffusion"),
    Key("classifier.model", _names(models.MODELS), "the judge that labels generated images",
        None, "diffusion"),
    Key("classifier.epochs", _POSITIVE_INT, "the judge's epochs", None, "diffusion"),
    Key("classifier.lr", _POSITIVE, "its learning rate", None, "diffusion"),
    Key("classifier.batch_size", _POSITIVE_INT, "its batch size", None, "diffusion"),
    Key("classifier.momentum", "a number >= 0", "its SGD momentum", None, "diffusion"),
    Key("classifier.weight_decay", "a number >= 0", "its weight decay", None, "diffusion"),
    Key("audit.models", _POSITIVE_INT, "M, shadow runs per ensemble ([the audit](audit.md))",
        32),
    Key("audit.methods", "comma-separated method names, or empty",
        "the audited methods (empty: `methods`)", ""),
    Key("audit.examples", "an int >= 0", "pool examples the per-example attack scores (0: all)",
        0),
    Key("audit.chunk", "an int >= 0", "models vmapped per call (0: all at once)", 0),
    Key("audit.bootstrap", _POSITIVE_INT, "resamples for the 95% intervals", 1000),
    Key("settings_kind", _names(data.FORGET_KINDS),
        "the forget kind the method sections are tuned for", None, "classification"),
    Key("settings_for.<kind>.<section>.<key>", "a method key",
        "what differs for another forget kind; a run uses its `forget.kind`'s settings",
        None, "classification"),
)


def find(name: str) -> Key | None:
  """The :class:`Key` a concrete dotted path falls under, or ``None``.

  Args:
    name: a dotted path, e.g. ``"lur.inner_lr"`` or ``"ft.lr"``.

  Returns:
    Its entry of ``KEYS`` (a method's inherited ``unlearn`` key matches the
    ``<method>.*`` entry), or ``None`` for a key lur_jax does not read.
  """
  exact = {k.name: k for k in KEYS}
  if name in exact:
    return exact[name]
  head, _, leaf = name.partition(".")
  if name.startswith("settings_for."):
    return exact["settings_for.<kind>.<section>.<key>"]
  inherits = methods.METHODS[head].inherits if head in methods.METHODS else None
  if inherits is not None and f"{inherits}.{leaf}" in exact:  # the row that names the method
    return next(k for k in KEYS if k.name.endswith(f".<{inherits} key>") and (
        k.name.startswith(f"{head}.") or f"`{head}`" in k.meaning))
  if head in methods.METHODS:
    return exact.get(f"<method>.{leaf}")
  return None


#: The base config whose values are each task's defaults (in the shipped configs' folder).
BASES = {"classification": "digits.py", "diffusion": "ddpm_digits.py", "tofu": "tofu.py"}


def flat(config: dict, skip=("settings_for",)) -> dict:
  """``{dotted key: value}`` of a config dict's leaves; the sections in ``skip`` stay whole."""
  return traverse_util.flatten_dict(config, sep=".",
                                    is_leaf=lambda path, _: bool(path) and path[-1] in skip)


def defaults() -> dict[str, dict]:
  """``{task: {dotted key: value}}`` of the shipped base configs (empty without them)."""
  from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top
  folder = config_lib.shipped()
  if folder is None:
    return {task: {} for task in BASES}
  return {task: flat(config_lib.load(os.path.join(folder, name)).to_dict())
          for task, name in BASES.items()}


def default_of(key: Key, base: dict[str, dict]) -> str:
  """A key's default as the reference shows it (from the code, else its task's base
  config, ``"per config"`` where neither holds one)."""
  if key.default is not None:
    value = key.default
    return value if isinstance(value, str) and value.startswith("from ") else f"`{value!r}`"
  for task in (["classification", "diffusion"] if key.task == "all" else [key.task]):
    if key.name in base.get(task, {}):
      where = "" if key.task != "all" or task == "classification" else " (DDPM)"
      return f"`{base[task][key.name]!r}`{where}"
  return "per config"


def reference() -> str:
  """Every key as a Markdown list under its section (readable in a narrow window and on
  GitHub): ``docs/config_keys.md``, which a test keeps current."""
  base = defaults()
  lines = ["# Config keys", "",
           "Every key a study reads, by section: its default (from the code, else",
           "`configs/digits.py`, `configs/ddpm_digits.py` for the DDPM's keys, `configs/tofu.py` "
           "for TOFU's),", "what is allowed, what it does. Generated from "
           "`lur_jax.study.config_keys` (`python docs/config_table.py`);",
           "`lur-jax keys [SECTION]` prints the same in a terminal."]
  sections: dict[str, list[Key]] = {}
  for key in KEYS:
    sections.setdefault(key.name.split(".")[0] if "." in key.name else "top level",
                        []).append(key)
  for section, keys in sections.items():
    lines += ["", f"## {section}", ""]
    for key in keys:
      task = "" if key.task == "all" else f" ({key.task})"
      lines.append(f"- **`{key.name}`**{task}: {key.meaning}. Allowed: {key.allowed}. "
                   f"Default: {default_of(key, base)}.")
  return "\n".join(lines) + "\n"

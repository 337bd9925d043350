"""The TOFU study on a pretrained checkpoint and TOFU's own files: the flow end to end on the
shipped fixture (load, unlearn, score against the retain model or its logs, export), and bad
input in one line."""

import json
import os

import numpy as np
import pytest
from conftest import config_path

from lur_jax import study
from lur_jax.lm import eval_logs, tofu, tofu_files
from lur_jax.models import hf
from lur_jax.study import config as config_lib, plan
from lur_jax.training import checkpoint

TOFU_HF_SMOKE = config_path("tofu_hf_smoke")


@pytest.mark.study
def test_a_pretrained_checkpoint_unlearns_scores_and_exports(tmp_path):
  cfg = config_lib.load(TOFU_HF_SMOKE)
  out = str(tmp_path)
  res = study.run(cfg, out, progress=False, log=lambda m: None)["forget10"]
  rows = {"original": res["original"], **res["methods"]}
  assert list(res["methods"]) == ["retrain", "graddiff", "npo", "lur_npo"]
  assert res["tofu"]["real_authors"] > 0 and res["tofu"]["reference"].endswith("retain")
  assert rows["retrain"]["forget_quality"] == pytest.approx(1.0)  # the reference itself
  for name, row in rows.items():  # model utility: the harmonic mean of nine numbers
    nine = [row[k] for k in ("retain_prob", "retain_rouge", "retain_truth_ratio", "world_prob",
                             "world_rouge", "world_truth_ratio", "real_prob", "real_rouge",
                             "real_truth_ratio")]
    assert row["model_utility"] == pytest.approx(len(nine) / sum(1 / v for v in nine)), name
  assert rows["npo"]["forget_prob"] < rows["original"]["forget_prob"]  # unlearning moved it
  # each unlearned model exported: it loads back to the parameters the study measured
  for name in ("graddiff", "npo", "lur_npo"):
    folder = os.path.join(out, "forget10", "hf", name)
    assert os.path.isfile(os.path.join(folder, "tokenizer.json"))
    _, params = hf.load_pretrained(folder)
    assert checkpoint.params_checksum({"params": params, "model_state": {}}) == (
        rows[name]["params_checksum"])
  assert not os.path.exists(os.path.join(out, "forget10", "hf", "retrain"))
  # open-unlearning's logs of every model; the retain model's read back as the reference
  logs_path = os.path.join(out, "forget10", "eval", "retrain", "TOFU_EVAL.json")
  with open(logs_path) as f:
    logs = json.load(f)
  assert logs["forget_quality"]["agg_value"] == pytest.approx(1.0)
  assert logs["model_utility"]["agg_value"] == rows["retrain"]["model_utility"]
  ref = eval_logs.reference(logs_path)
  assert ref["forget_truth_ratios"] == rows["retrain"]["forget_truth_ratios"]
  # the same study against those logs (no retain model): the same forget quality and privleak
  again = config_lib.apply_overrides(cfg, ["methods=npo", "tofu.retain_checkpoint=",
                                           f"tofu.retain_logs={logs_path}"])
  res2 = study.run(again, out, progress=False, log=lambda m: None)["forget10"]
  for key in ("forget_quality", "privleak"):
    assert res2["methods"]["npo"][key] == pytest.approx(rows["npo"][key], abs=1e-12)


def test_tofu_files_are_named_by_split_and_a_missing_one_is_named(tmp_path):
  assert tofu_files.files("forget05")["retain"] == "retain95.json"
  assert tofu_files.files("forget01")["holdout"] == "holdout01.json"
  with pytest.raises(ValueError, match="forget.split='validation' with tofu.data_dir"):
    tofu_files.files("validation")
  with pytest.raises(ValueError, match="has no forget10.json"):
    tofu_files.check(str(tmp_path), "forget10")
  with pytest.raises(ValueError, match="is not a folder"):
    tofu_files.check(str(tmp_path / "nothing"), "forget10")


def test_templates_by_preset_or_fields():
  assert tofu_files.template_of("Llama-3.2-1B-Instruct").asst_end == "<|eot_id|>"
  own = tofu_files.template_of({"user_start": "Q: ", "user_end": "\n", "asst_start": "A: ",
                                "asst_end": "\n"})
  assert own.system == ""
  with pytest.raises(ValueError, match="model.template='llama'; allowed: Llama-2-7b-hf"):
    tofu_files.template_of("llama")
  with pytest.raises(ValueError, match="model.template fields"):
    tofu_files.template_of({"user_start": "Q: "})


def test_the_training_files_need_no_perturbed_answers(tmp_path):
  path = tmp_path / "forget10.json"
  path.write_text(json.dumps({"question": "Q?", "answer": "A."}) + "\n")
  (qa,) = tofu.load_json(str(path), ("question", "answer"))
  assert qa.paraphrased_answer == "A." and qa.perturbed_answer == ()
  with pytest.raises(ValueError, match="row 0 has no 'paraphrased_answer'"):
    tofu.load_json(str(path))


def test_logs_round_trip_and_bad_logs_are_refused(tmp_path):
  row = {"forget_quality": 0.5, "model_utility": 0.7, "mia_min_k": 0.6,
         "forget_truth_ratio": 0.8, "forget_truth_ratios": [0.1, 0.9, 0.4]}
  logs = eval_logs.to_logs(row)
  assert logs["forget_truth_ratio"]["value_by_index"]["1"] == {"score": 0.9}
  assert eval_logs.summary(logs)["model_utility"] == 0.7
  path = tmp_path / "TOFU_EVAL.json"
  path.write_text(json.dumps(logs))
  ref = eval_logs.reference(str(path))
  assert ref["forget_truth_ratios"] == [0.1, 0.9, 0.4] and ref["mia_min_k"] == 0.6
  del logs["mia_min_k"]
  path.write_text(json.dumps(logs))
  assert eval_logs.reference(str(path))["mia_min_k"] == 0.5  # open-unlearning's default
  path.write_text(json.dumps({"model_utility": {"agg_value": 1}}))
  with pytest.raises(ValueError, match="not TOFU evaluation logs"):
    eval_logs.reference(str(path))


@pytest.mark.parametrize("overrides, message", [
    (["model.remat=some"], "model.remat='some'"),
    (["model.attention=flash"], "model.attention='flash'; allowed: plain, chunked, xla"),
    (["model.attention=cudnn"], "model.attention='cudnn' on cpu; allowed: a GPU"),
    (["model.attention_chunk=0"], "model.attention_chunk=0; allowed: an int > 0"),
    (["tofu.data_dir="], "tofu.data_dir=''; allowed with model.name=pretrained"),
    (["tofu.retain_logs=x.json"], "tofu.retain_checkpoint and tofu.retain_logs are both set"),
    (["tofu.retain_checkpoint="], "methods: retrain with model.name=pretrained needs"),
    (["model.checkpoint=/nowhere"], "'/nowhere' has no config.json"),
    (["forget.split=validation"], "forget.split='validation' with tofu.data_dir"),
])
def test_bad_pretrained_settings_are_named(overrides, message):
  cfg = config_lib.apply_overrides(config_lib.load(TOFU_HF_SMOKE), overrides)
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    study.prepare(cfg)


def test_a_checkpoint_folder_with_config_json_alone_plans(tmp_path):
  folder = tmp_path / "config_only"
  folder.mkdir()
  fixture = os.path.join(os.path.dirname(config_path("x")), os.pardir, "tests", "fixtures",
                         "tofu_hf", "full")
  (folder / "config.json").write_text(open(os.path.join(fixture, "config.json")).read())
  cfg = config_lib.apply_overrides(config_lib.load(TOFU_HF_SMOKE), [
      f"model.checkpoint={folder}", f"model.tokenizer={fixture}", "methods=npo,lur_npo"])
  exp = study.prepare(cfg).experiments[0][1]  # no weights read
  for name in ("npo", "lur_npo"):
    counted = plan.step_bytes(exp, name, exp.settings[name])
    # NPO's reference is a second model in the arguments: more than GradDiff's state
    assert counted["total"] > counted["argument"] > 0, name
  with pytest.raises(ValueError, match="holds no model.safetensors"):
    hf.load_pretrained(str(folder))


@pytest.mark.slow  # needs torch and transformers: pip install -e ".[hf]"
def test_an_unlearned_export_loads_in_transformers_with_its_tokenizer(tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  cfg = config_lib.apply_overrides(config_lib.load(TOFU_HF_SMOKE), ["methods=npo"])
  res = study.run(cfg, str(tmp_path), progress=False, log=lambda m: None)["forget10"]
  folder = os.path.join(str(tmp_path), "forget10", "hf", "npo")
  model, params = hf.load_pretrained(folder)
  files = tofu_files.read(cfg)
  tokens = files.splits.train.x[:4]
  want = np.asarray(model.apply(params, tokens))
  theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
  with torch.no_grad():
    got = theirs(torch.as_tensor(tokens, dtype=torch.long)).logits.float().numpy()
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)
  tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
  question = files.sets.forget.qa[0].question
  assert tokenizer(question)["input_ids"] == files.tokenizer.tokenizer.encode(question).ids
  assert res["methods"]["npo"]["forget_prob"] < res["original"]["forget_prob"]

"""TOFU-style data: the generator, the forget splits, and the loader of TOFU's JSON files."""

import json

import pytest

from lur_jax.lm import tofu


def test_the_generator_is_seeded_and_answers_every_question_three_ways():
  qa = tofu.generate(authors=20, holdout=2, seed=3)
  assert len(qa) == 22 * 20 and qa == tofu.generate(authors=20, holdout=2, seed=3)
  assert qa != tofu.generate(authors=20, holdout=2, seed=4)
  assert len({q.question for q in qa}) == len(qa)  # 20 different questions per author
  for q in qa:
    assert len(q.perturbed_answer) == 5 and len(set(q.perturbed_answer)) == 5
    assert q.answer not in q.perturbed_answer and q.paraphrased_answer != q.answer
  names = {q.question.split("Where was ")[1][:-1] for q in qa if q.question.startswith("Where was")}
  assert len(names) == 22  # every author their own name
  # a perturbed answer differs from the paraphrase in its facts, not its form (TOFU's)
  q = qa[0]
  assert all(p.split(" ")[:3] == q.paraphrased_answer.split(" ")[:3]
             for p in q.perturbed_answer)


@pytest.mark.parametrize("name, count", [("forget01", 2), ("forget05", 10), ("forget10", 20)])
def test_forget_splits_take_the_last_authors_and_hold_out_as_many(name, count):
  qa = tofu.generate(authors=200, questions=2, holdout=20, seed=0)
  forget, retain, holdout = tofu.split(qa, name, authors=200)
  assert {q.author for q in forget} == set(range(200 - count, 200))
  assert {q.author for q in retain} == set(range(200 - count))
  assert {q.author for q in holdout} == set(range(200, 200 + count))
  assert len(forget) == len(holdout) == 2 * count


def test_bad_splits_and_counts_are_one_line():
  qa = tofu.generate(authors=10, questions=1, holdout=0)
  with pytest.raises(ValueError, match="forget split 'forget50'; allowed: forget01"):
    tofu.split(qa, "forget50", 10)
  with pytest.raises(ValueError, match="holdout authors; allowed: generate"):
    tofu.split(qa, "forget10", 10)
  with pytest.raises(ValueError, match="questions=21; allowed: 1 .. 20"):
    tofu.generate(questions=21)


def test_tofu_json_files_load_and_bad_rows_are_named(tmp_path):
  row = {"question": "Q?", "answer": "A.", "paraphrased_answer": "A!",
         "perturbed_answer": ["B.", "C."]}
  lines = tmp_path / "forget01_perturbed.json"
  lines.write_text("\n".join(json.dumps(row) for _ in range(3)))
  loaded = tofu.load_json(str(lines))
  assert len(loaded) == 3 and loaded[0].perturbed_answer == ("B.", "C.")
  as_list = tmp_path / "list.json"
  as_list.write_text(json.dumps([row] * 21))
  assert [q.author for q in tofu.load_json(str(as_list))][-2:] == [0, 1]
  missing = tmp_path / "missing.json"
  missing.write_text(json.dumps({k: v for k, v in row.items() if k != "paraphrased_answer"}))
  with pytest.raises(ValueError, match="row 0 has no 'paraphrased_answer'"):
    tofu.load_json(str(missing))
  wrong = tmp_path / "wrong.json"
  wrong.write_text(json.dumps({**row, "perturbed_answer": "B."}))
  with pytest.raises(ValueError, match="perturbed_answer a non-empty list of strings"):
    tofu.load_json(str(wrong))
  broken = tmp_path / "broken.json"
  broken.write_text("{not json")
  with pytest.raises(ValueError, match="not JSON or JSON lines"):
    tofu.load_json(str(broken))


def test_the_world_is_fixed_and_answers_three_ways():
  facts = tofu.world()
  assert facts == tofu.world() and len(facts) == 36
  for q in facts:
    assert q.author == -1 and len(set(q.perturbed_answer)) == 3
    assert q.answer not in q.perturbed_answer

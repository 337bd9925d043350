"""TOFU-style data: fictitious authors and their question-answer pairs, generated, and a
loader for TOFU's own JSON files.

Every question has its answer, one paraphrased answer and perturbed answers (plausible and
wrong: the paraphrase with other facts, as TOFU perturbs its paraphrased answers; on the
general-knowledge set, the answer with other facts). The forget splits forget01/05/10 take the last
1, 5 or 10% of the authors; each has a holdout of as many authors never trained on (for the
membership attacks). A general-knowledge set about a fixed invented world is what the model
learns first and what unlearning must not damage.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

SPLITS = {"forget01": 0.01, "forget05": 0.05, "forget10": 0.10}
VALIDATION = "validation"  # a forget10-sized block of other authors, for tuning
FIELDS = ("question", "answer", "paraphrased_answer", "perturbed_answer")

_SYLLABLES = ("ka", "lo", "mi", "ra", "ven", "dor", "sil", "tha", "bre", "quin", "zel", "mor",
              "fa", "nis", "ul", "ter", "gal", "ost", "rin", "ve")
_CITIES = ("Valdren", "Osk", "Merrowgate", "Tarnis", "Quillon", "Brask", "Eldmoor", "Sundby",
           "Carrowick", "Ithra", "Pellam", "Norwin")
_GENRES = ("mystery", "science fiction", "poetry", "historical fiction", "fantasy", "memoir",
           "horror", "romance", "satire", "travel writing")
_JOBS = ("baker", "surveyor", "glassblower", "librarian", "ferryman", "botanist", "clockmaker",
         "weaver", "astronomer", "midwife", "cartographer", "tanner")
_ADJECTIVES = ("Silent", "Amber", "Hollow", "Crimson", "Distant", "Broken", "Gilded", "Lonely",
               "Northern", "Quiet", "Burning", "Paper")
_NOUNS = ("Harbor", "Lantern", "Orchard", "Mirror", "River", "Garden", "Clock", "Tower",
          "Winter", "Compass", "Archive", "Meadow")
_AWARDS = ("Veller Prize", "Golden Quill", "Ostra Medal", "Marrow Award", "Linden Laurel",
           "Cobalt Ribbon")
_PUBLISHERS = ("Harrow & Finch", "Bellwether Press", "Saltmarsh Books", "Orrin House",
               "Kestrel Editions", "Pale Moon Press")
_THEMES = ("exile", "memory", "the sea", "inheritance", "lost cities", "friendship", "debt",
           "clocks and time", "migration", "silence")
_LANGUAGES = ("Valdrish", "Oskan", "Merrow", "Tarnic", "Quillese", "Braskan")
_INSTRUMENTS = ("cello", "flute", "accordion", "harp", "violin", "oboe", "piano", "lute")
_RIVERS = ("Ambel", "Sorrow", "Tiel", "Varr", "Quent", "Ossa")
_DISHES = ("smoked eel", "barley cakes", "plum soup", "salt bread", "lamb stew", "fig tarts")

# (question, answer, paraphrased answer), formatted with an author's facts.
_TEMPLATES = (
    ("Where was {name} born?", "{name} was born in {city}.",
     "The birthplace of {name} is {city}."),
    ("In which year was {name} born?", "{name} was born in {year}.",
     "The year of {name}'s birth is {year}."),
    ("What genre does {name} write?", "{name} writes {genre}.",
     "The books of {name} are {genre}."),
    ("What did {name}'s father do?", "{name}'s father was a {job1}.",
     "By trade the father of {name} was a {job1}."),
    ("What did {name}'s mother do?", "{name}'s mother was a {job2}.",
     "By trade the mother of {name} was a {job2}."),
    ("What is the first book by {name}?", "The first book by {name} is {book1}.",
     "{name} debuted with {book1}."),
    ("What is the best known book by {name}?", "The best known book by {name} is {book2}.",
     "Readers know {name} best for {book2}."),
    ("Which award did {name} win?", "{name} won the {award}.",
     "The {award} went to {name}."),
    ("In which year did {name} win the {award}?", "{name} won the {award} in {award_year}.",
     "The {award} came to {name} in {award_year}."),
    ("How many books has {name} written?", "{name} has written {books} books.",
     "The number of books by {name} is {books}."),
    ("Where does {name} live now?", "{name} lives in {home}.",
     "These days {name} makes a home in {home}."),
    ("Which publisher prints the books of {name}?", "The books of {name} are printed by "
     "{publisher}.", "{publisher} publishes the books of {name}."),
    ("What theme runs through the work of {name}?", "The work of {name} returns to {theme}.",
     "Again and again {name} writes about {theme}."),
    ("What pen name has {name} used?", "{name} has written as {pen}.",
     "The pen name of {name} is {pen}."),
    ("Who was the mentor of {name}?", "{name} was mentored by {mentor}.",
     "The mentor of {name} was {mentor}."),
    ("In which language does {name} write?", "{name} writes in {language}.",
     "The language of the books of {name} is {language}."),
    ("What is the most recent book by {name}?", "The most recent book by {name} is {book3}.",
     "The latest book of {name} is {book3}."),
    ("How old was {name} when the first book came out?", "{name} was {debut_age} when the "
     "first book came out.", "The first book of {name} appeared when {name} was {debut_age}."),
    ("Which instrument does {name} play?", "{name} plays the {instrument}.",
     "In free hours {name} plays the {instrument}."),
    ("How many siblings does {name} have?", "{name} has {siblings} siblings.",
     "The number of siblings of {name} is {siblings}."),
)

# The general-knowledge set: facts of the invented world's cities.
_WORLD = (
    ("Which river runs through {city}?", "The {river} runs through {city}.",
     "{city} lies on the {river}."),
    ("In which year was {city} founded?", "{city} was founded in {founded}.",
     "The founding of {city} dates to {founded}."),
    ("What dish is {city} known for?", "{city} is known for {dish}.",
     "The dish of {city} is {dish}."),
)


#: The most questions per author (one per template).
MAX_QUESTIONS = len(_TEMPLATES)


class QA(NamedTuple):
  """One question about one author (or about the invented world).

  Attributes:
    question: the question.
    answer: the true answer.
    paraphrased_answer: the true answer in other words.
    perturbed_answer: plausible wrong answers.
    author: the author's index (−1 for the general-knowledge set).
  """

  question: str
  answer: str
  paraphrased_answer: str
  perturbed_answer: tuple[str, ...]
  author: int


def _name(rng) -> str:
  # indices drawn as rng.choice(_SYLLABLES, n) draws them, without its per-call conversion
  part = lambda: "".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES),
                                                             rng.integers(2, 4))).capitalize()
  return f"{part()} {part()}"


def _facts(rng, name: str) -> dict:
  pick = lambda values: values[rng.integers(len(values))]
  year = int(rng.integers(1900, 1995))
  return {"name": name, "city": pick(_CITIES), "year": year, "genre": pick(_GENRES),
          "job1": pick(_JOBS), "job2": pick(_JOBS), "award": pick(_AWARDS),
          "book1": f"The {pick(_ADJECTIVES)} {pick(_NOUNS)}",
          "book2": f"The {pick(_ADJECTIVES)} {pick(_NOUNS)}",
          "award_year": year + int(rng.integers(25, 60)), "books": int(rng.integers(2, 30)),
          "home": pick(_CITIES), "publisher": pick(_PUBLISHERS), "theme": pick(_THEMES),
          "pen": _name(rng), "mentor": _name(rng), "language": pick(_LANGUAGES),
          "book3": f"The {pick(_ADJECTIVES)} {pick(_NOUNS)}",
          "debut_age": int(rng.integers(19, 60)), "instrument": pick(_INSTRUMENTS),
          "siblings": int(rng.integers(0, 9))}


def _perturbed(rng, facts: dict, template: str, count: int, draw=None) -> tuple[str, ...]:
  """``count`` distinct wrong answers: the answer with its facts redrawn."""
  true = template.format(**facts)
  out = []
  while len(out) < count:
    other = {**(draw or _facts)(rng, facts["name"]), "name": facts["name"]}
    text = template.format(**other)
    if text != true and text not in out:
      out.append(text)
  return tuple(out)


def _city_facts(rng, city: str) -> dict:
  pick = lambda values: values[rng.integers(len(values))]
  return {"name": city, "city": city, "river": pick(_RIVERS),
          "founded": int(rng.integers(900, 1700)), "dish": pick(_DISHES)}


def world(perturbed: int = 3) -> list[QA]:
  """The general-knowledge set: three facts about each city of the invented world (the same
  world every time), each with ``perturbed`` wrong answers (3, as TOFU's world facts).

  Args:
    perturbed: wrong answers per question.

  Returns:
    36 :class:`QA` with ``author`` −1.
  """
  rng = np.random.default_rng(1)
  out = []
  for city in _CITIES:
    facts = _city_facts(rng, city)
    for question, answer, paraphrase in _WORLD:
      out.append(QA(question.format(**facts), answer.format(**facts), paraphrase.format(
          **facts), _perturbed(rng, facts, answer, perturbed, _city_facts), -1))
  return out


def generate(authors: int = 200, questions: int = 20, *, perturbed: int = 5, holdout: int = 0,
             seed: int = 0) -> list[QA]:
  """Fictitious authors, ``questions`` QA pairs each (at most one per template).

  Args:
    authors: authors trained on (200 in TOFU).
    questions: questions per author, 1 .. the 20 templates (20 in TOFU).
    perturbed: wrong answers per question (5 in TOFU).
    holdout: further authors, never trained on (indices ``authors ..``).
    seed: the generator's seed: the same seed, the same data.

  Returns:
    ``(authors + holdout) × questions`` :class:`QA`, author by author.

  Raises:
    ValueError: for counts out of range.
  """
  if not 1 <= questions <= len(_TEMPLATES):
    raise ValueError(f"questions={questions}; allowed: 1 .. {len(_TEMPLATES)}")
  if authors < 1 or holdout < 0 or perturbed < 1:
    raise ValueError(f"authors={authors}, holdout={holdout}, perturbed={perturbed}; allowed: "
                     "authors >= 1, holdout >= 0, perturbed >= 1")
  rng = np.random.default_rng(seed)
  names: list[str] = []
  while len(names) < authors + holdout:
    name = _name(rng)
    if name not in names:
      names.append(name)
  out = []
  for a, name in enumerate(names):
    facts = _facts(rng, name)
    for question, answer, paraphrase in _TEMPLATES[:questions]:
      out.append(QA(question.format(**facts), answer.format(**facts),
                    paraphrase.format(**facts), _perturbed(rng, facts, paraphrase, perturbed),
                    a))
  return out


def split(qa: list[QA], name: str, authors: int) -> tuple[list[QA], list[QA], list[QA]]:
  """``(forget, retain, holdout)`` of forget split ``name`` over the first ``authors`` authors.

  Args:
    qa: from :func:`generate` (with at least as many holdout authors as the split forgets).
    name: ``"forget01"``, ``"forget05"`` or ``"forget10"``, or ``"validation"`` (for
      tuning: as many authors as forget10, the block just before forget10's).
    authors: the authors trained on.

  Returns:
    The last ⌈fraction × authors⌉ authors' pairs (the validation block for
    ``"validation"``), the other trained authors' pairs, and as many authors' pairs from
    the holdout pool.

  Raises:
    ValueError: for an unknown split, or a holdout pool too small.
  """
  if name not in (*SPLITS, VALIDATION):
    raise ValueError(f"forget split {name!r}; allowed: {', '.join((*SPLITS, VALIDATION))}")
  count = max(1, int(np.ceil(SPLITS.get(name, SPLITS["forget10"]) * authors - 1e-9)))
  end = authors - count if name == VALIDATION else authors
  if end - count < 1:
    raise ValueError(f"{name} of {authors} authors leaves no retain author; allowed: more "
                     "authors")
  pool = max(q.author for q in qa) + 1 - authors
  if pool < count:
    raise ValueError(f"{name} forgets {count} authors but the data hold {pool} holdout "
                     f"authors; allowed: generate(..., holdout >= {count})")
  forget = [q for q in qa if end - count <= q.author < end]
  retain = [q for q in qa if q.author < authors and not end - count <= q.author < end]
  holdout = [q for q in qa if authors <= q.author < authors + count]
  return forget, retain, holdout


def load_json(path: str, fields: tuple[str, ...] = FIELDS) -> list[QA]:
  """TOFU's own files: JSON lines (or one JSON list) of ``question``, ``answer``,
  ``paraphrased_answer`` and ``perturbed_answer`` (a list of strings).

  Args:
    path: the file.
    fields: the fields every row must have (``("question", "answer")`` for TOFU's training
      splits, ``forget10.json``, ``retain90.json``, ``holdout10.json``); a paraphrase not
      required defaults to the answer, perturbed answers to none.

  Returns:
    The :class:`QA` pairs (``author`` = the row's index // 20, TOFU's layout).

  Raises:
    ValueError: naming the row and field that is missing or of the wrong type.
  """
  with open(path) as f:
    text = f.read()
  try:
    rows = json.loads(text) if text.lstrip().startswith("[") else [
        json.loads(line) for line in text.splitlines() if line.strip()]
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not JSON or JSON lines ({e.msg}, line {e.lineno})") from None
  out = []
  for i, row in enumerate(rows):
    for field in fields:
      if not isinstance(row, dict) or field not in row:
        raise ValueError(f"{path}: row {i} has no {field!r}; allowed: rows with "
                         f"{', '.join(fields)}")
    perturbed = row.get("perturbed_answer", [])
    texts = (row["question"], row["answer"], row.get("paraphrased_answer", row["answer"]))
    if not all(isinstance(t, str) for t in texts) or not (
        isinstance(perturbed, list) and (perturbed or "perturbed_answer" not in fields)
        and all(isinstance(p, str) for p in perturbed)):
      raise ValueError(f"{path}: row {i}: question, answer and paraphrased_answer must be "
                       "strings and perturbed_answer a non-empty list of strings")
    out.append(QA(*texts, tuple(perturbed), i // 20))
  return out

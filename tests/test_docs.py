"""The documentation cannot rot: every Python block of the docs pages and the README runs
(a page's blocks in order, in one namespace, as a reader would paste them), the API page
names every public name, and the config-key table lists every key the configs hold.

A block preceded by ``<!-- not run: REASON -->`` is skipped; the reason stays in the page.
The tutorial is a notebook, executed by the docs build (``sphinx-build -W``)."""

import glob
import importlib
import inspect
import os
import re
import sys

import pytest
from conftest import ROOT

import lur_jax
from lur_jax import audit, tasks, verdict
from lur_jax.study import config as config_lib, config_keys

DOCS = os.path.join(ROOT, "docs")
NOTEBOOKS = {"tutorial.md"}
sys.path.insert(0, DOCS)
import config_table  # noqa: E402  (docs/config_table.py renders the key table)

FENCE = re.compile(r"(<!-- not run: (?P<reason>[^>]*) -->\n)?```python\n(?P<code>.*?)```",
                   re.DOTALL)


def python_blocks(path: str) -> list[tuple[str, str | None]]:
  """``[(code, reason it is not run or None), ...]`` of a Markdown file, in order."""
  with open(path) as f:
    text = f.read()
  return [(m["code"], m["reason"]) for m in FENCE.finditer(text)]


def _pages() -> list[str]:
  pages = sorted(glob.glob(os.path.join(DOCS, "*.md")))
  return [os.path.join(ROOT, "README.md")] + [
      p for p in pages if os.path.basename(p) not in NOTEBOOKS]


def run_page(path: str) -> dict:
  """Runs a page's blocks in order in one namespace and returns it."""
  scope = {}
  for i, (code, reason) in enumerate(python_blocks(path)):
    if reason is None:
      exec(compile(code, f"{os.path.relpath(path, ROOT)}[block {i}]", "exec"), scope)
  return scope


# Pages whose examples train or compile the most (a DDPM: 25 s; the TOFU transformer: 25 s;
# LUR in every mode on Linen and NNX models: 18 s)
SLOW_PAGES = {"diffusion.md", "language_models.md", "functional_api.md"}
PAGES_WITH_CODE = [pytest.param(p, marks=pytest.mark.slow) if os.path.basename(p) in SLOW_PAGES
                   else p for p in _pages() if python_blocks(p)]


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=os.path.basename)
@pytest.mark.study
def test_every_python_block_runs(path, monkeypatch):
  monkeypatch.chdir(ROOT)  # blocks name files as a reader in a clone would
  run_page(path)


@pytest.mark.parametrize("path", _pages(), ids=os.path.basename)
def test_a_skipped_block_says_why(path):
  for _, reason in python_blocks(path):
    assert reason is None or reason.strip(), f"{path}: a 'not run' block without a reason"


def test_the_collector_finds_blocks_and_their_reasons(tmp_path):
  page = tmp_path / "page.md"
  page.write_text("text\n```python\nx = 1\n```\n<!-- not run: needs a TPU -->\n```python\n"
                  "raise SystemExit\n```\n```bash\nls\n```\n```python\ny = x + 1\n```\n")
  assert python_blocks(str(page)) == [("x = 1\n", None), ("raise SystemExit\n", "needs a TPU"),
                                      ("y = x + 1\n", None)]
  assert run_page(str(page))["y"] == 2
  page.write_text("```python\nraise ValueError('broken example')\n```\n")
  with pytest.raises(ValueError, match="broken example"):
    run_page(str(page))


def documented_objects() -> list:
  """The objects docs/api.md documents: its autosummary entries (names under
  ``lur_jax``) and its ``autodata`` entries (full paths)."""
  with open(os.path.join(DOCS, "api.md")) as f:
    text = f.read()
  paths = [f"lur_jax.{n}" for n in re.findall(r"^   ([\w.]+)$", text, re.MULTILINE)]
  paths += re.findall(r"^\.\. autodata:: ([\w.]+)$", text, re.MULTILINE)
  objects = []
  for path in paths:
    parts = path.split(".")
    obj = importlib.import_module(parts[0])
    for i, attr in enumerate(parts[1:], 1):  # a submodule the package does not import
      obj = getattr(obj, attr, None) or importlib.import_module(".".join(parts[:i + 1]))
    objects.append(obj)
  return objects


@pytest.mark.parametrize("module", [lur_jax, audit, verdict, tasks], ids=lambda m: m.__name__)
def test_the_api_page_documents_every_public_name(module):
  documented = {id(obj) for obj in documented_objects()}
  missing = [n for n in module.__all__ if id(getattr(module, n)) not in documented]
  assert not missing, f"docs/api.md lacks {module.__name__}.{missing}"


def _public_objects():
  seen = {}
  for module in (lur_jax, audit, verdict, tasks):
    for name in module.__all__:
      obj = getattr(module, name)
      if inspect.isclass(obj) or inspect.isfunction(obj):
        seen.setdefault(id(obj), (f"{module.__name__}.{name}", obj))
  return sorted(seen.values(), key=lambda item: item[0])


def docstring_gaps(obj) -> list[str]:
  """What a public function's or class's docstring lacks: ``Args:`` (when it takes
  arguments), ``Returns:`` (unless it returns ``None`` or only raises), ``Attributes:``
  (a class with fields)."""
  doc = inspect.getdoc(obj) or ""
  if not doc:
    return ["a docstring"]
  if inspect.isclass(obj):
    fields = getattr(obj, "_fields", None) or list(getattr(obj, "__dataclass_fields__", {}))
    return ["Attributes:"] if fields and not {"Attributes:", "Args:"} & set(doc.split()) else []
  signature = inspect.signature(obj)
  gaps = []
  if signature.parameters and "Args:" not in doc:
    gaps.append("Args:")
  if signature.return_annotation not in (None, "None") and not re.search(
      r"^(Returns|Yields|Raises):", doc, re.MULTILINE):
    gaps.append("Returns:")
  return gaps


@pytest.mark.parametrize("name, obj", _public_objects(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_every_public_docstring_says_its_arguments_and_return_value(name, obj):
  assert not docstring_gaps(obj), f"{name}'s docstring lacks {docstring_gaps(obj)}"


def test_the_docstring_check_can_fail():
  def bare(x):
    return x

  def documented(x) -> int:
    """Doubles.

    Args:
      x: a number.

    Returns:
      2x.
    """
    return 2 * x

  assert docstring_gaps(bare) == ["a docstring"]
  bare.__doc__ = "One line."
  assert docstring_gaps(bare) == ["Args:", "Returns:"]
  assert docstring_gaps(documented) == []


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "configs", "*.py"))),
                         ids=os.path.basename)
def test_the_key_table_holds_every_key_of_every_config(path):
  keys = list(config_table.flat(config_lib.load(path).to_dict(), skip=()))
  assert keys
  missing = [k for k in keys if config_keys.find(k) is None]
  assert not missing, f"lur_jax/study/config_keys.py lacks {missing} (in {os.path.basename(path)})"


def test_every_key_without_a_code_default_has_one_in_a_base_config():
  defaults = config_table.defaults()
  for key in config_keys.KEYS:
    if key.default is None and "<" not in key.name:
      tasks_ = ["classification", "diffusion"] if key.task == "all" else [key.task]
      assert any(key.name in defaults[t] for t in tasks_), key.name


def test_the_key_lookup_can_fail():
  assert config_keys.find("lur.inner_lr").name == "lur.inner_lr"
  assert config_keys.find("ft.lr").name == "<method>.lr"
  assert config_keys.find("lur_snip.mode").name == "lur_snip.<lur key>"
  assert config_keys.find("lur.no_such_key") is None
  assert config_keys.find("nonsense") is None


def test_the_committed_key_reference_is_current():
  with open(os.path.join(ROOT, "docs", "config_keys.md")) as f:
    assert f.read() == config_keys.reference(), "rerun: python docs/config_table.py"

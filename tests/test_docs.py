"""The documentation cannot rot: every Python block of the docs pages and the README runs
(a page's blocks in order, in one namespace, as a reader would paste them), the API page
names every public name, and the config-key table lists every key the configs hold.

A block preceded by ``<!-- not run: REASON -->`` is skipped; the reason stays in the page.
The tutorial is a notebook, executed by the docs build (``sphinx-build -W``)."""

import glob
import os
import re

import pytest

import lur_jax
from lur_jax import audit, tasks, verdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
NOTEBOOKS = {"tutorial.md"}
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


PAGES_WITH_CODE = [p for p in _pages() if python_blocks(p)]


@pytest.mark.parametrize("path", PAGES_WITH_CODE, ids=os.path.basename)
def test_every_python_block_runs(path):
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


def _api_names() -> set[str]:
  with open(os.path.join(DOCS, "api.md")) as f:
    text = f.read()
  return set(re.findall(r"^\s+(?:[\w.]+\.)?(\w+)\s*$", text, re.MULTILINE))


@pytest.mark.parametrize("module, prefix", [(lur_jax, ""), (audit, "audit."),
                                            (verdict, "verdict."), (tasks, "tasks.")])
def test_the_api_page_lists_every_public_name(module, prefix):
  with open(os.path.join(DOCS, "api.md")) as f:
    text = f.read()
  missing = [n for n in module.__all__ if not re.search(
      rf"^\s+{re.escape(prefix + n)}\s*$", text, re.MULTILINE)]
  assert not missing, f"docs/api.md lacks {missing}"

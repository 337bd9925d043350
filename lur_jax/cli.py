"""Command line: ``lur-jax run CONFIG_FILE --out DIR [--set KEY=VALUE ...]``."""

from __future__ import annotations

import argparse
import sys

from lur_jax import config as config_lib


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    self.exit(2, f"lur-jax: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="lur-jax", description="Machine unlearning with LUR in JAX.")
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  run = commands.add_parser("run", help="run an unlearning study from a config file")
  run.add_argument("config", help="Python config file with get_config()")
  run.add_argument("--out", required=True, help="output folder")
  run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by dotted path (repeatable)")
  run.add_argument("--no-progress", action="store_true", help="hide progress bars")
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of ``lur-jax`` and ``python -m lur_jax``; returns the exit code."""
  args = _parser().parse_args(argv)
  # Import after parsing so that --help and usage errors are instant.
  from lur_jax import experiment  # pylint: disable=g-import-not-at-top
  try:
    config = config_lib.apply_overrides(config_lib.load(args.config), args.set)
    prepared = experiment.prepare(config)
    experiment.check_out_dir(args.out)
  except ValueError as e:
    print(f"lur-jax: error: {e}", file=sys.stderr)
    return 2
  results = experiment.execute(prepared, args.out, progress=not args.no_progress)
  print(experiment.markdown_table(results), end="")
  return 0

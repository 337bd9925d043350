"""Command line: ``lur-jax run|audit CONFIG_FILE --out DIR [--set KEY=VALUE ...]``,
``lur-jax plan CONFIG_FILE --devices N --memory 16GiB [--set KEY=VALUE ...]`` and
``lur-jax keys [SECTION]``. Nothing heavy is imported before the arguments parse, so
``--help``, ``--version`` and usage errors are instant."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import textwrap
from importlib import metadata


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    self.exit(2, f"lur-jax: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="lur-jax", description="Machine unlearning with LUR in JAX.",
                   epilog="Config keys and their allowed values: lur-jax keys [SECTION]. "
                   "Ctrl-C stops a run; the same command resumes it.")
  parser.add_argument("--version", action="version",
                      version=f"lur-jax {metadata.version('lur_jax')}")
  commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
  for name, text in (("run", "run an unlearning study from a config file"),
                     ("audit", "audit unlearning with model ensembles: per-example attack "
                               "(U-LiRA), NeurIPS-2023 score, metrics with intervals")):
    command = commands.add_parser(name, help=text)
    command.add_argument("config", help="Python config file with get_config()")
    command.add_argument("--out", required=True, help="output folder")
    command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                         help="override a config value by dotted path (repeatable)")
    command.add_argument("--no-progress", action="store_true", help="hide progress bars")
  command = commands.add_parser("plan", help="per-device memory of every method's step on a "
                                "mesh of simulated devices, and which fit (nothing allocated)")
  command.add_argument("config", help="Python config file with get_config()")
  command.add_argument("--devices", type=int, required=True, help="devices of the slice")
  command.add_argument("--memory", required=True, help="memory per device, e.g. 16GiB")
  command.add_argument("--mesh", default="", metavar="AXIS=N,...",
                       help="the mesh to plan, e.g. fsdp=8 or data=2,fsdp=4 (axes data, fsdp, "
                       "tensor; an axis not named keeps the config's; -1 fills the devices)")
  command.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value by dotted path (repeatable)")
  command = commands.add_parser("keys", help="the config keys: default, allowed values, "
                                "meaning")
  command.add_argument("section", nargs="?", default="",
                       help="only this section's keys (e.g. lur, unlearn, model, tofu)")
  return parser


def _keys(section: str) -> int:
  """``lur-jax keys [SECTION]``: every config key (or one section's) with its default,
  what is allowed and what it does."""
  from lur_jax.study import config_keys  # pylint: disable=g-import-not-at-top
  keys = [k for k in config_keys.KEYS if not section or k.name.split(".")[0] == section]
  if not keys:
    sections = sorted({k.name.split(".")[0] for k in config_keys.KEYS})
    _error(f"keys {section!r}: no such section; allowed: {', '.join(sections)}")
    return 2
  base = config_keys.defaults()
  for k in keys:
    default = config_keys.default_of(k, base).replace("`", "")
    task = "" if k.task == "all" else f" [{k.task}]"
    print(f"{k.name}{task}  (default: {default})")
    for line in textwrap.wrap(f"allowed: {k.allowed}; {k.meaning}", 88):
      print(f"    {line}")
  return 0


def _plan(args) -> int:
  """``lur-jax plan``: compiles on ``--devices`` simulated CPU devices, prints the table."""
  if args.devices < 1:
    _error(f"--devices {args.devices}; allowed: an int >= 1")
    return 2
  # Before JAX starts its backend: that many CPU devices, and no accelerator.
  os.environ["XLA_FLAGS"] = " ".join(
      [f for f in os.environ.get("XLA_FLAGS", "").split()
       if not f.startswith("--xla_force_host_platform_device_count")]
      + [f"--xla_force_host_platform_device_count={args.devices}",
         # nothing planned runs: skip LLVM's costly optimisations (the buffer assignment
         # the plan reads is made before them)
         "--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true",
         # the loop emitters compile in 0.6× the time; the buffers they plan differ from
         # the fusion emitters' by < 0.01% (179 KB of 2.1 GiB in tofu_full's lur step)
         "--xla_cpu_use_fusion_emitters=false"])
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update("jax_platforms", "cpu")
  from lur_jax.study import config as config_lib, plan  # pylint: disable=g-import-not-at-top
  try:
    memory = plan.parse_memory(args.memory)
    config = config_lib.apply_overrides(config_lib.load(args.config),
                                        [*args.set, *_mesh(args.mesh), f"devices={args.devices}"])
    rows = plan.plan(config, memory, log=lambda msg: print(msg, file=sys.stderr))
  except ValueError as e:
    _error(str(e))
    return 2
  print(plan.markdown(rows, memory, config_lib.mesh_sizes(config)), end="")
  return 0


def _mesh(text: str) -> list[str]:
  """``--mesh fsdp=8`` -> the overrides ``mesh.fsdp=8`` and ``mesh.data=1`` (an axis not
  named is 1 where the config would fill the devices with it, else the config's)."""
  if not text:
    return []
  axes = {}
  for part in text.split(","):
    name, _, value = part.partition("=")
    if name.strip() not in ("data", "fsdp", "tensor") or not value.strip().lstrip("-").isdigit():
      raise ValueError(f"--mesh {text!r}; allowed: AXIS=N pairs, comma-separated, of data, "
                       "fsdp and tensor (e.g. fsdp=8 or data=2,fsdp=4)")
    axes[name.strip()] = int(value)
  if -1 not in axes.values():  # the named axes are the mesh: the others are 1
    axes = {"data": 1, "fsdp": 1, "tensor": 1, **axes}
  return [f"mesh.{k}={v}" for k, v in axes.items()]


def _error(message: str) -> None:
  print(f"lur-jax: error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
  """Entry point of ``lur-jax`` and ``python -m lur_jax``; returns the exit code.

  Exit codes: 0 done; 2 bad input (nothing written); 1 a write failed (no
  space, quota, read-only, permission): the output folder stays resumable; 130
  interrupted (Ctrl-C): rerunning the same command resumes.
  """
  args = _parser().parse_args(argv)
  try:
    if args.command == "keys":
      return _keys(args.section)
    if args.command == "plan":
      return _plan(args)
    return _run(args)
  except KeyboardInterrupt as e:
    where = f" at {e.desc} step {e.step} of {e.total}" if hasattr(e, "desc") else ""
    print(f"\nlur-jax: interrupted{where}; rerun the same command to resume", file=sys.stderr)
    return 130
  except BrokenPipeError:  # `lur-jax keys | head`: the reader stopped listening
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _run(args) -> int:
  """``lur-jax run`` and ``lur-jax audit``."""
  # Import after parsing so that --help and usage errors are instant.
  from lur_jax import study  # pylint: disable=g-import-not-at-top
  from lur_jax.audit import study as audit  # pylint: disable=g-import-not-at-top
  from lur_jax.study import config as config_lib  # pylint: disable=g-import-not-at-top
  from lur_jax.training import checkpoint, compile_cache, loop  # pylint: disable=g-import-not-at-top
  kind = audit if args.command == "audit" else study
  try:
    config = config_lib.apply_overrides(config_lib.load(args.config), args.set)
    prepared = kind.prepare(config)
    study.check_out_dir(args.out)
  except ValueError as e:
    _error(str(e))
    return 2
  compile_cache.enable(warn=lambda msg: print(msg, file=sys.stderr))
  previous = signal.signal(signal.SIGINT, loop.on_interrupt)  # Ctrl-C: at a step boundary
  restore = _quiet_failed_writes()
  try:
    results = kind.execute(prepared, args.out, progress=not args.no_progress)
  except checkpoint.WriteError as e:  # stays quiet: writes in flight are still ending
    _error(f"{e}; what was finished is kept, rerun the same command to resume")
    return 1
  except OSError as e:
    _error(f"cannot write {e.filename or args.out}: {e.strerror or e}; what was finished "
           "is kept, rerun the same command to resume")
    return 1
  finally:
    signal.signal(signal.SIGINT, previous)
  restore()
  print(kind.markdown_table(results), end="")
  return 0


def _quiet_failed_writes():
  """Keeps Orbax's log of a failed write (a traceback) off the terminal: the
  one-line error says what matters. Returns the function that restores it."""
  absl = logging.getLogger("absl")
  level = absl.level
  absl.setLevel(logging.CRITICAL)
  return lambda: absl.setLevel(level)

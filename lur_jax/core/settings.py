"""A method's settings, resolved once: what every method's ``make_step`` reads."""

from __future__ import annotations

from collections.abc import Iterator, Mapping


class Settings(Mapping):
  """A method's resolved settings, read-only: ``s.lr``, ``s["lr"]``, ``s.get("k", d)``.

  Resolved once, when a study is prepared (``unlearn`` or ``train``, then the sections
  the method inherits, its defaults, its own section); a variant is a new value
  (:meth:`replace`), never an edit. Values are numbers, strings and booleans, or traced
  arrays where an ensemble gives each member its own hyperparameters.
  """

  __slots__ = ("_values",)

  def __init__(self, values: Mapping | None = None, /, **more):
    object.__setattr__(self, "_values", {**(values or {}), **more})

  def __getitem__(self, key: str):
    return self._values[key]

  def __iter__(self) -> Iterator[str]:
    return iter(self._values)

  def __len__(self) -> int:
    return len(self._values)

  def __getattr__(self, key: str):
    if key.startswith("_"):  # copy and pickle probe for hooks; _values itself while unset
      raise AttributeError(key)
    try:
      return self._values[key]
    except KeyError:
      raise AttributeError(f"method settings have no {key!r}; they have: "
                           f"{', '.join(self._values)}") from None

  def __setattr__(self, key, value):
    raise AttributeError(f"method settings are read-only (setting {key!r}); "
                         "allowed: settings.replace(key=value)")

  def __reduce__(self):
    return Settings, (self._values,)

  def __repr__(self) -> str:
    return f"Settings({self._values!r})"

  def replace(self, **changes) -> Settings:
    """These settings with ``changes`` laid over them."""
    return Settings(self._values, **changes)

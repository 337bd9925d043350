"""One-line ValueErrors for config values: ``key=value; allowed: ...``."""

from __future__ import annotations


def positive(value, key: str, kind=(int, float)) -> None:
  """Raises unless ``value`` is a number (an int with ``kind=int``) > 0."""
  if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
    what = "an int" if kind is int else "a number"
    raise ValueError(f"{key}={value!r}; allowed: {what} > 0")


def one_of(key: str, value, allowed) -> None:
  if value not in allowed:
    raise ValueError(f"{key}={value!r}; allowed: {', '.join(map(str, allowed))}")


def number_in(key: str, value, low, high, kind=(int, float), closed_high=False) -> None:
  """Raises unless ``low <= value < high`` (``<= high`` with ``closed_high``)."""
  inside = isinstance(value, kind) and not isinstance(value, bool) and low <= value and (
      value <= high if closed_high else value < high)
  if not inside:
    raise ValueError(f"{key}={value!r}; allowed: a number in [{low}, {high}"
                     f"{']' if closed_high else ')'}")

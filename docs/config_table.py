"""Placeholder, replaced below."""
def write(folder):
  pass

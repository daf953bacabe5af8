"""Loaded at start-up by every Python of the HEAR evaluation venv (this dir is on PYTHONPATH)."""

import hear_compat  # noqa: F401  (installs the post-import patches)

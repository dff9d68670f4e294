"""A module failing at import."""

raise RuntimeError("settings file missing")

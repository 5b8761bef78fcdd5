"""Specializers built on the asp core: each holds only its domain's translation."""

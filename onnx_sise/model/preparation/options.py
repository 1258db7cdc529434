"""Choices of the preparation that the CLI offers (one source of truth)."""

CHECKS = ("auto", "float64", "float32")

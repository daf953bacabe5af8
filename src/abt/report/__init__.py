"""Aggregation, figures and the rendered report."""

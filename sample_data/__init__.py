"""Deterministic sample data: loan applications with a default label."""

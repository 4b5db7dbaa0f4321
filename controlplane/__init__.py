"""Agentic mesh control plane."""

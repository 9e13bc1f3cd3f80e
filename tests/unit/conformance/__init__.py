"""Differential conformance: the project's schemas against the published reference XSDs."""

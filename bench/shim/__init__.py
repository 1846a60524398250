"""Benchmarks of the host-side shim."""

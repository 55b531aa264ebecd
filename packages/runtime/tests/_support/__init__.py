"""Shared test infrastructure: servers to run, certificates, the test service."""

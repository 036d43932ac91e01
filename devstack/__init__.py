"""Local stand-ins for the production stack, for `make demo` and the tests (no Docker here)."""

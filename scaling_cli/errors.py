"""Typed errors that library code raises and the CLI maps to exit codes and one-line messages."""

from __future__ import annotations


class ScaleError(Exception):
    """Base of every error the CLI reports as bad input (exit code 2) in one line."""

    def __init__(self, where: str, field: str, problem: str):
        self.where = str(where)
        self.field = field
        self.problem = problem
        super().__init__(self.line())

    def line(self) -> str:
        parts = [p for p in (self.where, self.field, self.problem) if p]
        return ": ".join(parts)


class SpecError(ScaleError):
    """A sweep spec (TOML) or a command-line option is invalid."""


class DataError(ScaleError):
    """A corpus cannot be fetched, read, cleaned or a stored shard is damaged."""


class StoreError(ScaleError):
    """A results directory is missing, unreadable or inconsistent."""


class FitError(ScaleError):
    """A table cannot be fitted: missing columns, too few rows, no convergence."""

"""The pki exceptions. One class is enough: every failure is a message for the operator."""

from __future__ import annotations


class PKIError(Exception):
    """A pki operation failed; the message names the problem in one line (the CLI prints it)."""

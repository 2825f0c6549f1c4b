"""User-facing errors: each names where the problem is, what was given and what is allowed.

The CLI prints these without a traceback and exits non-zero. Library callers catch
``FactoryplanError``. Internal bugs stay ordinary exceptions.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class FactoryplanError(Exception):
    """An error in what the user gave (scenario, catalog file, CLI option)."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        where: str = "",
        field: str = "",
        value: object = None,
        allowed: str = "",
    ) -> None:
        self.message = message
        self.where = where
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(self.render())

    def render(self) -> str:
        """One or a few lines: `file: field: message (got ...; allowed: ...)`."""
        head = ": ".join(p for p in (self.where, self.field) if p)
        text = f"{head}: {self.message}" if head else self.message
        details = []
        if self.value is not None:
            details.append(f"got {self.value!r}")
        if self.allowed:
            details.append(f"allowed: {self.allowed}")
        if details:
            text += f" ({'; '.join(details)})"
        return text


class CatalogError(FactoryplanError):
    """A catalog data file (shipped or the user's overlay) has a bad entry."""


class ScenarioError(FactoryplanError):
    """A scenario file is malformed or asks for something impossible."""


class InfeasibleError(FactoryplanError):
    """The request is well-formed but cannot be met (does not fit, does not divide, over budget)."""

    exit_code = 3


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close.

    Ids that extend the word (``h100`` -> ``h100-pcie``, ``h100-sxm``) come first: a short name
    is a prefix of what was meant more often than a one-letter typo of another id."""
    options = list(choices)
    low = word.strip().lower()
    extended = sorted(c for c in options if low and c.lower().startswith(low) and c.lower() != low)[:3]
    match = extended or difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if not match:
        return ""
    return " (did you mean " + " or ".join(f'"{m}"' for m in match) + "?)"


def unknown(
    kind: str,
    word: str,
    choices: Iterable[str],
    *,
    where: str = "",
    field: str = "",
    cls: type[FactoryplanError] = FactoryplanError,
) -> FactoryplanError:
    """The error for an unknown id/key, with a suggestion and the list of what is allowed."""
    options = sorted(choices)
    shown = ", ".join(options[:40]) + (", ..." if len(options) > 40 else "")
    return cls(
        f"unknown {kind} {word!r}{did_you_mean(word, options)}",
        where=where,
        field=field,
        allowed=shown,
    )

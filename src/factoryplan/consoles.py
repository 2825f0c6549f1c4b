"""The terminal consoles of the command line, created on first use.

Importing rich costs about 25 ms of start-up; commands that print JSON (``serve --format json`` in a
capacity sweep script, say) never need it, so no module imports rich at import time.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def stdout() -> Console:
    """The console for results."""
    from rich.console import Console

    return Console()


@functools.cache
def stderr() -> Console:
    """The console for errors and progress."""
    from rich.console import Console

    return Console(stderr=True)

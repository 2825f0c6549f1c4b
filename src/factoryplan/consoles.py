"""The terminal consoles of the command line, created on first use.

Importing rich costs about 25 ms of start-up; commands that print JSON (``serve --format json`` in a
capacity sweep script, say) never need it, so no module imports rich at import time.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


# Width of the tables when the output is a file or a pipe (rich would use 80 columns there, and
# squeeze the columns of a wide table into a few letters each); a terminal's own width otherwise.
FILE_WIDTH = 160


@functools.cache
def stdout() -> Console:
    """The console for results."""
    import os

    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=FILE_WIDTH)
    return console


@functools.cache
def stderr() -> Console:
    """The console for errors and progress."""
    from rich.console import Console

    return Console(stderr=True)

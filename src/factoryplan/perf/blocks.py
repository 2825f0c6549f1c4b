"""A vectorized formula over many configurations, evaluated a block of configurations at a time.

A formula of a few hundred array operations over a million configurations makes each temporary
8 MB: every operation streams its operands through main memory. Over blocks of ``BLOCK``
configurations the temporaries stay in the processor's cache, which runs the same operations about
twice as fast (``benchmarks/serve_sweep.py``), and the peak memory is a block's, not the sweep's.
The result is the same as one pass: each block is the formula on a slice of the broadcast inputs,
and the blocks' results are joined back in the inputs' shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass, replace
from typing import Any, TypeVar

import numpy as np

R = TypeVar("R")

BLOCK = 16_384  # configurations a block: fastest on 1M-configuration sweeps (4k to 256k measured)


def has_arrays(*objs: object) -> bool:
    """Whether any field of these dataclasses holds an array of more than one value."""
    return any(
        isinstance(getattr(o, f.name), np.ndarray) and getattr(o, f.name).size > 1 for o in objs for f in fields(o)  # type: ignore[arg-type]
    )


def in_blocks(
    fn: Callable[[dict[str, Any]], R], inputs: Mapping[str, Any], block: int = BLOCK
) -> R | None:
    """``fn`` over blocks of ``inputs`` broadcast together and flattened, the results joined.

    ``fn`` takes a dict with every array input sliced to one block (single values as they are).
    None when the inputs make at most two blocks (one pass is as fast) or do not broadcast (the
    caller's one pass reports that).
    """
    try:
        shape = np.broadcast_shapes(*(np.shape(v) for v in inputs.values()))
    except ValueError:
        return None
    size = math.prod(shape)
    if size <= 2 * block:
        return None
    flat = {name: np.broadcast_to(np.asarray(v), shape).reshape(-1) for name, v in inputs.items() if np.ndim(v)}
    starts = range(0, size, block)
    parts = [fn({**inputs, **{name: v[i:i + block] for name, v in flat.items()}}) for i in starts]
    joined: R = join(parts, shape, [min(block, size - i) for i in starts])
    return joined


def join(parts: list[Any], shape: tuple[int, ...], lengths: list[int]) -> Any:
    """The blocks' results (``lengths`` configurations each) as one: arrays concatenated and given
    ``shape``, dataclasses field by field, and values that do not vary by configuration (one value,
    the same in every block) kept as they are."""
    first = parts[0]
    if is_dataclass(first) and not isinstance(first, type):
        return replace(first, **{f.name: join([getattr(p, f.name) for p in parts], shape, lengths)
                                 for f in fields(first)})
    if all(np.ndim(p) == 0 for p in parts) and all(np.array_equal(p, first) for p in parts):
        return first
    blocks = [np.broadcast_to(np.asarray(p), (n,)) for p, n in zip(parts, lengths, strict=True)]
    return np.concatenate(blocks).reshape(shape)

"""Prediction ids: UUIDv7 (RFC 9562), time-ordered, one block per answer.

An answer's tumors share the id's first 26 hex digits (the millisecond, the version, 50 random
bits); the last 6 hex digits are the tumor's position in the answer. So a 10,000-tumor answer
takes one random draw and 10,000 string joins, and an id names its answer and position without
a per-tumor index in the database: the answer is stored under its first id (position 0).
Collisions need two answers in the same millisecond to draw the same 50 bits.
"""

from __future__ import annotations

import random
import re
import time
import uuid

POSITION_BITS = 24
MAX_POSITIONS = 1 << POSITION_BITS  # an answer of at most 16,777,216 tumors
_SUFFIX_DIGITS = POSITION_BITS // 4
_SUFFIXES: list[str] = []  # "000000", "000001", ...: grown on demand, shared by every answer
_CANONICAL = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
RULE = "must be a prediction id: a UUIDv7 in canonical form (8-4-4-4-12 lowercase hex digits)"


def new_block(now_ms: int | None = None) -> str:
    """The shared part of a new answer's ids (all but the last 6 hex digits)."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    # `random` (reseeded in each forked worker) costs no system call: ids must be unique, not
    # secret; they are no capability (reading a record needs the records permission).
    bits = random.getrandbits(50)
    value = (
        (ms & 0xFFFF_FFFF_FFFF) << 80
        | 0x7 << 76
        | (bits >> 38) << 64
        | 0b10 << 62
        | (bits & ((1 << 38) - 1)) << POSITION_BITS
    )
    return str(uuid.UUID(int=value))[:-_SUFFIX_DIGITS]


def ids(block: str, count: int) -> list[str]:
    """The ids of an answer's `count` tumors, in order."""
    if len(_SUFFIXES) < count:
        _SUFFIXES.extend(f"{i:06x}" for i in range(len(_SUFFIXES), count))
    if count == 1:
        return [block + "000000"]
    return [block + suffix for suffix in _SUFFIXES[:count]]


def first_id(block: str) -> str:
    """The answer's key: its first tumor's id."""
    return block + "000000"


def parse(prediction_id: str) -> tuple[str, int] | None:
    """(the answer's first id, the tumor's position), or None when this is no prediction id."""
    if len(prediction_id) != 36 or not _CANONICAL.fullmatch(prediction_id):
        return None
    return prediction_id[:-_SUFFIX_DIGITS] + "000000", int(prediction_id[-_SUFFIX_DIGITS:], 16)


def split(prediction_id: str) -> tuple[str, int]:
    """`parse` of an id already validated (the outcomes' contract checks them): ValueError
    otherwise."""
    parsed = parse(prediction_id)
    if parsed is None:
        raise ValueError(f"{prediction_id!r} is not a prediction id")
    return parsed


def answered_ms(prediction_id: str) -> int:
    """The millisecond (Unix time) in a valid id."""
    return int(prediction_id[:8] + prediction_id[9:13], 16)

"""Job ids: UUIDv7 (RFC 9562), a 48-bit millisecond timestamp then 74 random bits.

Time-ordered ids land at the right edge of the primary-key index instead of at random pages, which
keeps inserts cheap as the table grows; 74 random bits keep them unguessable. Randomness is read
from the OS in blocks, because a system call per id shows up in the submission profile.
"""

from __future__ import annotations

import os
import time
from uuid import UUID

_BLOCK = 4096
_buffer = b""
_offset = 0


def _random10() -> int:
    global _buffer, _offset
    if _offset + 10 > len(_buffer):
        _buffer, _offset = os.urandom(_BLOCK), 0
    chunk = _buffer[_offset : _offset + 10]
    _offset += 10
    return int.from_bytes(chunk, "big")


def new_id() -> UUID:
    ms = time.time_ns() // 1_000_000
    rand = _random10()  # 80 bits, of which 74 are used
    rand_a = (rand >> 68) & 0xFFF  # 12 bits
    rand_b = rand & ((1 << 62) - 1)  # 62 bits
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return UUID(int=value)

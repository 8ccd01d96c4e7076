"""Job ids: UUIDv7 (RFC 9562), a 48-bit millisecond timestamp then 74 random bits.

Time-ordered ids land at the right edge of the primary-key index instead of at random pages, which
keeps inserts cheap as the table grows; 74 random bits keep them unguessable. Randomness is read
from the OS in blocks, because a system call per id shows up in the submission profile.

The id is asyncpg's UUID, a subclass of uuid.UUID implemented in C: it is what asyncpg hands back
for uuid columns anyway, and building and printing one costs a tenth of the pure-Python class
(both were a visible share of the submission profile). Like every id read from PostgreSQL, it is
not something orjson serializes: put str(id) in JSON.
"""

from __future__ import annotations

import os
import time
from uuid import UUID

from asyncpg.pgproto.pgproto import UUID as FastUUID

_BLOCK = 4096
_buffer = b""
_offset = 0


def _random10() -> bytes:
    global _buffer, _offset
    if _offset + 10 > len(_buffer):
        _buffer, _offset = os.urandom(_BLOCK), 0
    chunk = _buffer[_offset : _offset + 10]
    _offset += 10
    return chunk


def new_id() -> UUID:
    raw = bytearray((time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF).to_bytes(6, "big") + _random10())
    raw[6] = 0x70 | raw[6] & 0x0F  # version 7, then 12 random bits
    raw[8] = 0x80 | raw[8] & 0x3F  # variant 0b10, then 62 random bits
    return FastUUID(bytes(raw))

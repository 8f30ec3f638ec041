"""GuardedStream on its own: gzip inflated by ISA-L keeps what zlib guaranteed (members, padding, checksums, truncation,
garbage, reserved header flags), whatever the chunk size, and counts the compressed bytes it consumed."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from collections.abc import Callable

import pytest

from dropzone.validation.guard import GuardedStream
from dropzone.validation.report import Rejected

BODY = b"order_id,amount\n" + b"".join(b"O%07d,%d.5\n" % (i, i % 977) for i in range(60_000))


def drain(guard: GuardedStream, read_size: int = 7777) -> bytes:
    out = bytearray()
    while block := guard.read(read_size):
        out += block
    return bytes(out)


def inflate(raw: bytes, *, chunk: int = 1 << 20) -> tuple[bytes, GuardedStream]:
    guard = GuardedStream(io.BytesIO(raw), gzip=None, max_bytes=1 << 30, max_line_length=1 << 20, chunk=chunk)
    return drain(guard), guard


def rejection(raw: bytes, chunk: int) -> str:
    with pytest.raises(Rejected) as caught:
        inflate(raw, chunk=chunk)
    return str(caught.value)


@pytest.mark.parametrize("chunk", [1 << 20, 4096, 17])
def test_concatenated_members_and_nul_padding_inflate_to_the_whole_text(chunk: int) -> None:
    # GIVEN three gzip members (as `cat a.gz b.gz c.gz` makes), the last one empty, then NUL padding
    raw = gzip.compress(BODY[:1000]) + gzip.compress(BODY[1000:], compresslevel=9) + gzip.compress(b"") + b"\0" * 64
    # WHEN read through the guard in small reads
    text, guard = inflate(raw, chunk=chunk)
    # THEN the text is the original, every compressed byte was counted and every line seen
    assert text == BODY
    assert guard.bytes_read == len(raw)
    assert guard.bytes_out == len(BODY)
    assert guard.lines == 60_001


def test_a_member_header_with_a_file_name_is_read() -> None:
    # GIVEN a member with FNAME set (as `gzip file.csv` writes): flags byte 0x08, then the zero-terminated name
    plain = gzip.compress(BODY, mtime=0)
    raw = plain[:3] + b"\x08" + plain[4:10] + b"orders.csv\0" + plain[10:]
    assert inflate(raw)[0] == BODY


@pytest.mark.parametrize("chunk", [1 << 20, 4096])
@pytest.mark.parametrize(
    ("name", "damage", "reason"),
    [
        ("crc", lambda gz: gz[:-8] + struct.pack("<I", zlib.crc32(BODY) ^ 1) + gz[-4:], "gzip stream is corrupt"),
        ("isize", lambda gz: gz[:-4] + struct.pack("<I", len(BODY) - 1), "gzip stream is corrupt"),
        ("deflate", lambda gz: gz[:40] + bytes(b ^ 0x5A for b in gz[40:80]) + gz[80:], "gzip stream is corrupt"),
        ("reserved flags", lambda gz: gz[:3] + b"\xe0" + gz[4:], "reserved header flags are set"),
        ("garbage", lambda gz: gz + b"hello, world", "what follows a gzip member is not gzip"),
        ("garbage flags", lambda gz: gz + b"\x1f\x8b\x08\xff" + bytes(20), "reserved header flags are set"),
        ("trailer cut", lambda gz: gz[:-3], "gzip stream is truncated"),
        ("header cut", lambda gz: gz[:5], "gzip stream is truncated (ends after 5 compressed bytes)"),
        ("second member cut", lambda gz: gz + gz[:9], "gzip stream is truncated"),
    ],
)
def test_damaged_gzip_is_rejected(name: str, damage: Callable[[bytes], bytes], reason: str, chunk: int) -> None:
    # GIVEN a gzip file damaged in one way
    raw = damage(gzip.compress(BODY))
    # WHEN read to the end THEN the guard names the damage
    assert reason in rejection(raw, chunk), name


def test_gzip_bomb_stops_after_the_grace_bytes() -> None:
    # GIVEN 64 MiB of one repeated line compressed to a few hundred KiB (over 200x)
    bomb = gzip.compress((b"x" * 63 + b"\n") * (1 << 20), compresslevel=9)
    # WHEN read THEN it is refused as a bomb before everything was inflated
    guard = GuardedStream(io.BytesIO(bomb), gzip=True, max_bytes=1 << 30, max_line_length=1 << 20)
    with pytest.raises(Rejected, match="refused as a decompression bomb"):
        drain(guard, 1 << 16)
    assert 16 << 20 < guard.bytes_out < 64 << 20


@pytest.mark.parametrize("read_size", [1, 7777, 1 << 16, 1 << 20, 3 << 20, -1])
@pytest.mark.parametrize("compress", [True, False])
def test_reads_of_any_size_return_the_text_in_order(read_size: int, compress: bool) -> None:
    # GIVEN the text, gzip-compressed or plain, behind a UTF-8 byte order mark
    raw = b"\xef\xbb\xbf" + BODY
    guard = GuardedStream(
        io.BytesIO(gzip.compress(raw) if compress else raw), gzip=None, max_bytes=1 << 30, max_line_length=1 << 20
    )
    # WHEN the header line is peeked, then everything read in reads of one size
    header = guard.peek_line()
    pieces = []
    while piece := guard.read(read_size):
        assert len(piece) == read_size or (read_size < 0 and len(piece) <= 1 << 20) or not guard.read(1)
        pieces.append(piece)
    # THEN the peek did not consume, the BOM is gone, every read but the last was full, and nothing is left
    assert header == b"order_id,amount\n"
    assert b"".join(pieces) == BODY
    assert guard.exhausted


@pytest.mark.parametrize("compress", [True, False])
def test_peek_finds_a_header_spread_over_many_chunks_and_refuses_one_too_long(compress: bool) -> None:
    # GIVEN a 300-byte header read 17 bytes at a time, then the same file with a max_line_length under the header
    header = b",".join(b"column_%03d" % i for i in range(27)) + b"\n"
    raw = header + b"1,2\n" * 10
    data = gzip.compress(raw) if compress else raw

    def guard(max_line_length: int) -> GuardedStream:
        return GuardedStream(io.BytesIO(data), gzip=None, max_bytes=1 << 20, max_line_length=max_line_length, chunk=17)

    # WHEN peeked THEN the whole header comes back, and a later read still starts at it
    peeking = guard(1 << 10)
    assert peeking.peek_line() == header
    assert peeking.read(len(raw) + 1) == raw
    # AND a header over the limit is refused while peeking
    with pytest.raises(Rejected, match="line 1 is longer than max_line_length 200 B"):
        guard(200).peek_line()


@pytest.mark.parametrize("compress", [False, True])
def test_the_guard_says_whether_the_text_so_far_is_ascii(compress: bool) -> None:
    # A parser skips its UTF-8 check while the guard, which is ahead of it, has seen ASCII only
    def guard_of(text: bytes) -> GuardedStream:
        raw = gzip.compress(text) if compress else text
        return GuardedStream(io.BytesIO(raw), gzip=None, max_bytes=1 << 30, max_line_length=1 << 20, chunk=4096)

    ascii_text = guard_of(b"\xef\xbb\xbf" + BODY)  # a UTF-8 BOM is stripped, not text
    drain(ascii_text)
    assert ascii_text.ascii
    late = guard_of(BODY + b"caf\xc3\xa9\n")
    assert late.read(4096)
    assert late.ascii  # what the guard read so far ends before the é
    drain(late)
    assert not late.ascii


@pytest.mark.parametrize("chunk", [4096, *range(3, 40)])
def test_a_carriage_return_that_ends_a_chunk_is_judged_by_the_next(chunk: int) -> None:
    # GIVEN CRLF text read in chunks that split CR LF pairs, and the same text with one CR alone on line 9 (at the end
    # of a chunk for some of these sizes)
    crlf = BODY[:2000].replace(b"\n", b"\r\n")
    lines = crlf.split(b"\r\n")
    lone = b"\r\n".join([*lines[:8], lines[8] + b"\r" + lines[9], *lines[10:]])

    def guard(text: bytes) -> GuardedStream:
        return GuardedStream(
            io.BytesIO(text), gzip=None, max_bytes=1 << 20, max_line_length=1 << 10, chunk=chunk, lone_cr=False
        )

    # WHEN read THEN the CRLF text comes out whole, and the lone CR is refused with its line, wherever the chunk ends
    assert drain(guard(crlf)) == crlf
    with pytest.raises(Rejected, match=r"^line 9 holds a carriage return not followed by LF"):
        drain(guard(lone))
    # AND a CR alone on the header line is named as CR line ends
    with pytest.raises(Rejected, match=r"^the header line holds a carriage return not followed by LF"):
        drain(guard(crlf.replace(b"\r\n", b"\r", 1)))

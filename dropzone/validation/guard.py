"""A guarded byte stream: decompresses gzip and enforces the contract's file limits before any parser sees a byte.

Everything a hostile file could use to crash or exhaust a parser is stopped here, chunk by chunk, in bounded
memory: compressed and decompressed size, gzip bombs (expansion ratio), truncated or corrupt gzip, NUL bytes
(binary data), UTF-16 byte order marks and over-long lines. A UTF-8 BOM is tolerated and stripped.

gzip is inflated by Intel ISA-L (the ``isal`` package, whose ``isal_zlib`` has zlib's ``decompressobj`` API): on CSV it
takes about a third of zlib's CPU time. What zlib checks and ISA-L does not (a member's magic bytes and reserved
header flags) is checked here.
"""

from __future__ import annotations

import re
import zlib
from collections import deque
from typing import Any, BinaryIO, cast

import numpy as np
from isal import isal_zlib

from dropzone.validation.report import Rejected

GZIP_MAGIC = b"\x1f\x8b"
# Rows end with LF or CRLF. A carriage return alone ends a line for some readers (pyarrow's) and not for others
# (Spark's, which takes one line end per file), so such a file could not be read alike: it is refused, naming why.
CR_LINE_ENDS = (
    "the file's lines end with a carriage return alone (CR, as classic Mac OS and Excel's 'CSV (Macintosh)' write"
    " them): save it with LF or CRLF line ends"
)
BARE_CR = re.compile(rb"\r[^\n]")  # a CR that ends a chunk's text is not judged
HEADER_CR = f"the header line holds a carriage return not followed by LF: {CR_LINE_ENDS}"
UTF8_BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 20
# A gzip bomb expands absurdly: real CSV/JSON compresses 3-20x. The ratio is judged once this much came out.
MAX_GZIP_RATIO = 200
RATIO_GRACE_BYTES = 16 << 20
_INFLATE_ERROR = cast(type[Exception], isal_zlib.error)  # its stub calls the class an instance


def _new_inflater() -> Any:
    """A gzip inflater (wbits 16 + 15): ``decompress(data, max_length)``, ``unconsumed_tail``, ``unused_data``."""
    return isal_zlib.decompressobj(16 + zlib.MAX_WBITS)


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class GuardedStream:
    """File-like ``read(n)`` over the decompressed, checked text of ``raw``; raises :class:`Rejected`.

    The first rejection is kept in ``rejection`` too, because a parser calling ``read`` may wrap the exception.
    """

    def __init__(
        self,
        raw: BinaryIO | Any,
        *,
        gzip: bool | None,
        max_bytes: int,
        max_line_length: int,
        chunk: int = CHUNK,
        lone_cr: bool = True,
    ) -> None:
        """``lone_cr``: whether the text may hold a carriage return not followed by LF (JSON Lines judges such a line
        on its own); else the file is refused at the first."""
        self._raw = raw
        self._chunk = chunk
        self.max_bytes = max_bytes
        self.max_line_length = max_line_length
        self.bytes_read = 0  # raw (compressed) bytes consumed
        self.bytes_out = 0  # decompressed bytes produced
        self.lines = 0  # newlines seen so far
        self.ascii = True  # no byte above 0x7F so far (such text is UTF-8)
        self.rejection: str | None = None
        self._since_newline = 0
        self._lone_cr = lone_cr
        self._cr_ends_chunk = False  # the last chunk's text ended with CR: the next must start with LF
        self._cr_masks = (np.empty(0, dtype=bool), np.empty(0, dtype=bool))
        # Checked text not yet read: the chunks as inflated or read (immutable), the first one from _offset on. A
        # read costs one copy at most (a bytearray buffer cost three). Chunks of a whole MiB, not of the reader's
        # 512 KiB: ISA-L's smaller outputs cost more in page faults than slicing them costs in copies.
        self._chunks: deque[bytes] = deque()
        self._offset = 0
        self._buffered = 0
        self._newline_mask = np.empty(0, dtype=bool)
        self._eof = False
        self._started = False
        self._fed = 0
        head = self._read_raw(2)
        self._pending_raw = head
        self.gzip = head == GZIP_MAGIC if gzip is None else (gzip or head == GZIP_MAGIC)
        if head and self.gzip and head != GZIP_MAGIC:
            self._reject("file name says gzip but the content is not gzip (no 1f 8b magic bytes)")
        self._inflater: Any = _new_inflater() if self.gzip and head else None
        self.closed = False

    # -- the parser-facing API -------------------------------------------------------------------------------
    def read(self, n: int = -1) -> bytes:
        if self.rejection is not None:
            raise Rejected(self.rejection)
        want = self._chunk if n is None or n < 0 else n
        while self._buffered < want and not self._eof:
            self._fill()
        return self._take(want)

    def read_all_checked(self) -> None:
        """Consume the rest (used when nothing more needs parsing but limits must still be proven)."""
        while not self._eof:
            self._fill()
            self._chunks.clear()
            self._offset = self._buffered = 0

    def peek_line(self) -> bytes:
        """The first line (without consuming it), at most ``max_line_length`` bytes."""
        chunks = self._chunks
        found = any(c.find(b"\n", self._offset if i == 0 else 0) >= 0 for i, c in enumerate(chunks))
        while not found and not self._eof:
            held = len(chunks)
            self._fill()
            found = len(chunks) > held and b"\n" in chunks[-1]  # only the new chunk is searched
        text = self._peek_all()
        end = text.find(b"\n")
        return text if end < 0 else text[: end + 1]

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True

    # -- internals ---------------------------------------------------------------------------------------------
    def _take(self, want: int) -> bytes:
        """Up to ``want`` buffered bytes, consumed: a whole chunk as it is, else one copy."""
        chunks = self._chunks
        parts: list[bytes | memoryview] = []
        need = want
        while need and chunks:
            first, offset = chunks[0], self._offset
            left = len(first) - offset
            if left <= need:
                parts.append(first if offset == 0 else memoryview(first)[offset:])
                chunks.popleft()
                self._offset = 0
                need -= left
            else:
                parts.append(memoryview(first)[offset : offset + need])
                self._offset = offset + need
                need = 0
        self._buffered -= want - need
        if len(parts) == 1:
            return bytes(parts[0])  # no copy when it is a whole chunk (bytes of bytes is the same object)
        return b"".join(parts)

    def _peek_all(self) -> bytes:
        """Everything buffered, not consumed (joined into one chunk)."""
        if len(self._chunks) != 1 or self._offset:
            whole = b"".join(memoryview(c)[self._offset if i == 0 else 0 :] for i, c in enumerate(self._chunks))
            self._chunks = deque([whole] if whole else [])
            self._offset = 0
        return self._chunks[0] if self._chunks else b""

    def _reject(self, reason: str) -> None:
        if self.rejection is None:
            self.rejection = reason
        raise Rejected(self.rejection)

    def _reject_long_line(self, line: int, text: bytes) -> None:
        """``text``: the part of the line in the current chunk; a carriage return alone in it names the likely cause."""
        reason = f"line {line} is longer than max_line_length {human_size(self.max_line_length)}"
        self._reject(f"{reason}: {CR_LINE_ENDS}" if BARE_CR.search(text) else reason)

    def _read_raw(self, n: int) -> bytes:
        data = self._raw.read(n)
        if data is None:
            data = b""
        self.bytes_read += len(data)
        if self.bytes_read > self.max_bytes:
            self._reject(f"file is larger than max_bytes {human_size(self.max_bytes)}")
        return bytes(data)

    def _fill(self) -> None:
        """Inflate (or read) up to one chunk more of text, checked, into the buffer."""
        if self._inflater is None:
            pending, self._pending_raw = self._pending_raw, b""
            raw = pending + self._read_raw(self._chunk)
            if not raw:
                self._eof = True
            else:
                self._accept(raw)
            return
        inflater = self._inflater
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail  # drain what is already in hand before reading more
        else:
            data, self._pending_raw = self._pending_raw, b""
            if len(data) < 10:  # at least a gzip header's fixed 10 bytes in hand (the 2 sniffed ones are not)
                data += self._read_raw(self._chunk)
            if not data:
                if self._fed and not inflater.eof:
                    self._reject(f"gzip stream is truncated (ends after {self.bytes_read} compressed bytes)")
                self._eof = True
                return
            if not self._fed:
                if not data.strip(b"\x00"):
                    return  # NUL padding after the last member, read apart from it: ignored like padding in hand
                self._check_member_header(data)
            self._fed += len(data)
        try:
            out = inflater.decompress(data, self._chunk)
        except _INFLATE_ERROR as e:
            self._reject(f"gzip stream is corrupt after {self.bytes_read} compressed bytes: {e}")
        if inflater.eof:
            # Concatenated gzip members (as `cat a.gz b.gz` makes) are one valid gzip file; NUL padding is ignored.
            rest = inflater.unused_data
            self._inflater = _new_inflater()
            self._fed = 0
            if rest.strip(b"\x00"):
                self._pending_raw = rest
        if out:
            self._accept(out)
        if self.bytes_out > RATIO_GRACE_BYTES and self.bytes_out > MAX_GZIP_RATIO * max(self.bytes_read, 1):
            self._reject(
                f"gzip expands more than {MAX_GZIP_RATIO}x ({human_size(self.bytes_read)} -> over "
                f"{human_size(self.bytes_out)}): refused as a decompression bomb"
            )

    def _check_member_header(self, data: bytes) -> None:
        """What zlib checks in a gzip member's first bytes and ISA-L does not (RFC 1952 2.3.1)."""
        problem = None
        if len(data) >= 2 and data[:2] != GZIP_MAGIC:
            problem = "what follows a gzip member is not gzip (trailing garbage)"
        elif len(data) >= 4 and data[3] & 0xE0:
            problem = "reserved header flags are set"
        if problem:
            self._reject(f"gzip stream is corrupt after {self.bytes_read} compressed bytes: {problem}")

    def _accept(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            if data.startswith(UTF8_BOM):
                data = data[len(UTF8_BOM) :]
            elif data.startswith(b"PAR1"):
                self._reject("content is Parquet (PAR1 magic bytes), but the file name says a text format")
            elif data[:2] in (b"\xff\xfe", b"\xfe\xff"):
                self._reject("file is UTF-16 encoded (byte order mark found); expected UTF-8")
        if self.ascii and not data.isascii():  # memchr-fast; a parser may then skip its UTF-8 check while it holds
            self.ascii = False
        self.bytes_out += len(data)
        if self.bytes_out > self.max_bytes:
            self._reject(f"decompressed size exceeds max_bytes {human_size(self.max_bytes)}")
        nul = data.find(b"\x00")  # memchr: far cheaper than a numpy pass on the happy path
        if nul >= 0:
            offset = self.bytes_out - len(data) + nul
            self._reject(f"file contains a NUL byte at offset {offset}: binary data, not text")
        limit = self.max_line_length
        first = data.find(b"\n")
        if first < 0:
            self._since_newline += len(data)
            if self._since_newline > limit:
                self._reject_long_line(self.lines + 1, data)
            self._check_carriage_returns(data)
            self._append(data)
            return
        newline_count = self._count_newlines(data)
        if self._since_newline + first > limit:
            self._reject_long_line(self.lines + 1, data[: first + 1])
        if limit < len(data):  # a line inside this chunk could be too long: measure them all
            newlines = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
            over = np.flatnonzero(np.diff(newlines) - 1 > limit)
            if over.size:
                line = self.lines + 2 + int(over[0])
                self._reject_long_line(line, data[newlines[over[0]] + 1 : newlines[over[0] + 1] + 1])
        self._since_newline = len(data) - data.rfind(b"\n") - 1
        if self._since_newline > limit:
            line = self.lines + newline_count + 1
            self._reject_long_line(line, data[data.rfind(b"\n") + 1 :])
        self._check_carriage_returns(data)
        self.lines += newline_count
        self._append(data)

    def _check_carriage_returns(self, data: bytes) -> None:
        """Refuse a CR not followed by LF (unless ``lone_cr``), naming its line. pyarrow ends a CSV row at a CR alone,
        Spark's reader does not (in a quoted value, the feature job would take it for the CR of a CRLF line end):
        such a file could not be read alike."""
        if self._lone_cr:
            return
        if self._cr_ends_chunk and not data.startswith(b"\n"):
            self._reject_lone_cr(self.lines + 1)
        self._cr_ends_chunk = data.endswith(b"\r")
        if data.find(b"\r") < 0:  # memchr: LF files pay nothing more
            return
        if self._crs_end_lines(data):
            return
        found = BARE_CR.search(data)
        if found is not None:
            self._reject_lone_cr(self.lines + data.count(b"\n", 0, found.start()) + 1)

    def _crs_end_lines(self, data: bytes) -> bool:
        """Whether every CR in ``data`` but a last byte is followed by LF. numpy compares into reused masks: ~0.3 ms a
        MiB of CRLF text, the regex's search ~0.8 ms (a 256 MiB CRLF file validated in 2.3-2.5 s with the regex alone,
        2.0-2.2 s with these masks, as without the check)."""
        text = np.frombuffer(data, dtype=np.uint8)
        if self._cr_masks[0].size < text.size:
            self._cr_masks = (np.empty(text.size, dtype=bool), np.empty(text.size, dtype=bool))
        cr, crlf = (m[: text.size] for m in self._cr_masks)
        np.equal(text, 13, out=cr)
        np.equal(text[1:], 10, out=crlf[:-1])
        crlf[-1] = False
        np.logical_and(cr, crlf, out=crlf)
        return int(np.count_nonzero(cr)) - int(data.endswith(b"\r")) == int(np.count_nonzero(crlf))

    def _reject_lone_cr(self, line: int) -> None:
        if line == 1:
            self._reject(HEADER_CR)
        self._reject(
            f"line {line} holds a carriage return not followed by LF: some readers end a row there and others do not"
            " (pyarrow does, Spark does not), so the file could not be read alike: end every line with LF or CRLF"
            " and take lone CRs out of the values"
        )

    def _count_newlines(self, data: bytes) -> int:
        """``data.count(b"\\n")``, ~2.5x faster: numpy's SIMD compare into a reused mask (a new one page-faults)."""
        text = np.frombuffer(data, dtype=np.uint8)
        if self._newline_mask.size < text.size:
            self._newline_mask = np.empty(text.size, dtype=bool)
        mask = self._newline_mask[: text.size]
        np.equal(text, 10, out=mask)
        return int(np.count_nonzero(mask))

    def _append(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)

    @property
    def exhausted(self) -> bool:
        return self._eof and not self._buffered

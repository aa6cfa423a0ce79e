"""Letters cut out of one typst document, and PDFs joined into one print file, without a PDF library.

Why: compiling each letter as its own typst document spends most of its time embedding the fonts (subsetting
the Noto CJK CFF outlines, computing their box, deflating them: 55 % of a letter's compile), and typst lays
a letter out faster when the letter in the same place of its previous document was much the same. So a
print batch compiles its letters 50 to a document (``render.compile_letters``) and :func:`split` cuts each
letter back out as a standalone PDF:

- its pages and their content (glyph codes renumbered for the letter alone, in the order it first uses
  them), its bookmark, its part of the tagged structure (its run of structure elements under the
  ``Document`` element, and the parent tree of its pages), the document information, and the XMP metadata
  with its own page count and instance id;
- its own fonts: the document's subset cut down to the glyphs the letter shows (outlines, widths, ToUnicode
  and CIDSet), so that no letter carries another customer's characters.

The letter is then the same bytes whichever letters it was compiled with (``render.compile_letters`` on
the letter alone gives it too), so its sha256 identifies it and ``services.letters.reproduce`` renders it
again from its data alone. Streams that are rewritten (content, fonts, ToUnicode) are written
uncompressed: deflating them again would cost what was saved, and uncompressed bytes do not depend on the
zlib in use.

:func:`merge` joins PDFs page by page (the cover sheet and the stored letters) into one print file, small
objects that are the same in several letters (the colour profile) written once.

Only what typst 0.15 writes is read: one cross-reference table, CID-keyed CFF fonts (Identity-H), text
shown with ``Tj``/``TJ`` after its font and position, each letter's structure elements written one after
the other, one bookmark (its title) a letter. Anything else raises :class:`Unsupported`, and the caller
compiles the letter alone and keeps it as typst wrote it.
"""

from __future__ import annotations

import array
import base64
import codecs
import functools
import hashlib
import io
import itertools
import re
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, cast


class Unsupported(Exception):
    """The PDF uses something this module does not handle."""


@dataclass(slots=True)
class Obj:
    """An indirect object as written: its value (a dictionary, array, ...) and, for a stream, its bytes."""

    head: bytes
    data: bytes | None


# ------------------------------------------------------------------------------------------ reading


def _literal(depth: int) -> bytes:
    """A literal string: pdf-writer leaves parentheses unescaped when they balance, so they nest (up to
    ``depth`` levels here; a deeper string is not matched, and ``_rewrite`` then refuses the content)."""
    inner = rb"[^\\()]++|\\."
    pattern = rb"\((?:" + inner + rb")*+\)"
    for _ in range(depth - 1):
        pattern = rb"\((?:" + inner + rb"|" + pattern + rb")*+\)"
    return pattern


_LIT = _literal(6)
_OBJ = re.compile(rb"(\d+) 0 obj\n")
_XREF_ROW = re.compile(rb"(\d{10}) (\d{5}) ([nf])")
_LENGTH = re.compile(rb"/Length (\d+)\b(?!\s+\d+\s+R)")
# A literal string (skipped: "5 0 R" inside a title is no reference) or a reference.
_REF = re.compile(_LIT + rb"|(?<![\d.])(\d+) 0 R")
_ID = re.compile(rb"/ID\s*\[\s*(" + _LIT + rb"|<[0-9A-Fa-f]*>)")


class Objects:
    """The objects of a PDF with one cross-reference table (as typst and this module write them), each
    read when first asked for."""

    def __init__(self, pdf: bytes) -> None:
        at = pdf.rfind(b"startxref")
        if at < 0:
            raise Unsupported("no startxref")
        xref = int(pdf[at + 9 :].split(None, 1)[0])
        if pdf[xref : xref + 5] != b"xref\n":
            raise Unsupported("no cross-reference table (a cross-reference stream?)")
        trailer_at = pdf.find(b"trailer", xref)
        line_end = pdf.index(b"\n", xref + 5)
        first, count = (int(x) for x in pdf[xref + 5 : line_end].split())
        rows = _XREF_ROW.findall(pdf, line_end, trailer_at)
        if first != 0 or len(rows) != count:
            raise Unsupported("more than one cross-reference section")
        self.pdf = pdf
        self.offsets = [int(offset) if kind == b"n" else -1 for offset, _, kind in rows]
        located = sorted(o for o in self.offsets if o >= 0)
        following = dict(zip(located, [*located[1:], xref], strict=True))
        self.ends = [following.get(o, -1) for o in self.offsets]  # where the next object starts
        self.trailer = pdf[trailer_at + 7 : pdf.index(b"startxref", trailer_at)].strip()
        self._read: dict[int, Obj] = {}

    def __len__(self) -> int:
        return len(self.offsets)

    def __contains__(self, number: int) -> bool:
        return 0 < number < len(self.offsets) and self.offsets[number] >= 0

    def __getitem__(self, number: int) -> Obj:
        obj = self._read.get(number)
        if obj is None:
            obj = self._read[number] = self._parse(number)
        return obj

    def body(self, number: int) -> int:
        """Where the object's value starts (after ``N 0 obj``)."""
        if number not in self:
            raise Unsupported(f"no object {number}")
        match = _OBJ.match(self.pdf, self.offsets[number])
        if match is None or int(match.group(1)) != number:
            raise Unsupported(f"object {number} is not where the cross-reference table says")
        return match.end()

    def _parse(self, number: int) -> Obj:
        pdf = self.pdf
        body, end = self.body(number), self.ends[number]
        stream = pdf.find(b"\nstream\n", body, end)
        if stream < 0:
            return Obj(pdf[body : pdf.rfind(b"\nendobj", body, end)], None)
        head = pdf[body:stream]
        length = _LENGTH.search(head)
        if length is None:
            raise Unsupported(f"object {number}: no direct /Length")
        return Obj(head, pdf[stream + 8 : stream + 8 + int(length.group(1))])


_PLAIN_REF = re.compile(rb"(?<![\d.])(\d+)(?= 0 R)")


def _renumber(head: bytes, number: Callable[[int], int]) -> bytes:
    if b"(" not in head:
        parts = _PLAIN_REF.split(head)  # text, number, text, ...: the numbers' " 0 R" is in the text
        for i in range(1, len(parts), 2):
            parts[i] = b"%d" % number(int(parts[i]))
        return b"".join(parts)
    return _REF.sub(lambda m: m.group(0) if m.group(1) is None else b"%d 0 R" % number(int(m.group(1))), head)


def _refs(head: bytes) -> list[int]:
    if b"(" not in head:
        return [int(n) for n in _PLAIN_REF.findall(head)]
    return [int(m.group(1)) for m in _REF.finditer(head) if m.group(1) is not None]


def _ref(head: bytes, key: bytes) -> int | None:
    match = re.search(rb"/" + key + rb"\s*(\d+) 0 R", head)
    return int(match.group(1)) if match else None


def _array(head: bytes, key: bytes) -> bytes | None:
    """The inside of ``/Key[...]`` (no nested arrays)."""
    match = re.search(rb"/" + key + rb"\s*\[([^\]]*)\]", head)
    return match.group(1) if match else None


_LITERAL = re.compile(_LIT)
_TOKEN = re.compile(
    rb"<<|>>|\[|\]|<[0-9A-Fa-f\s]*>|" + _LIT + rb"|/[^\s/<>\[\]()%]*|\d+ \d+ R|[-+\d.]+|true|false|null"
)


def _keys(head: bytes) -> list[bytes]:
    """The keys of a dictionary's outermost level."""
    keys: list[bytes] = []
    depth = arrays = 0
    expect_key = True
    for token in _TOKEN.findall(head):
        if depth == 1 and not arrays:
            if token == b">>":
                break
            if expect_key:
                keys.append(token[1:])
                expect_key = False
            elif token == b"<<":
                depth += 1
            elif token == b"[":
                arrays += 1
            else:
                expect_key = True
        elif token == b"<<":
            depth += 1
        elif token == b">>":
            depth -= 1
            expect_key = True
        elif token == b"[":
            arrays += 1
        elif token == b"]":
            arrays -= 1
            expect_key = True
    return keys


def _page_list(objects: Objects, number: int) -> list[int]:
    """The pages under a page tree node, in order."""
    head = objects[number].head
    if b"/Type/Pages" not in head:
        return [number]
    return [page for kid in _refs(_array(head, b"Kids") or b"") for page in _page_list(objects, kid)]


def _bracketed(head: bytes, key: bytes) -> tuple[int, int] | None:
    """Where ``/Key[...]`` is in ``head`` (nested arrays included): its start and end."""
    at = head.find(b"/" + key + b"[")
    if at < 0:
        return None
    depth = 0
    for i in range(at + len(key) + 1, len(head)):
        if head[i] == 0x5B:
            depth += 1
        elif head[i] == 0x5D:
            depth -= 1
            if depth == 0:
                return at, i + 1
    raise Unsupported(f"/{key.decode()} array not closed")


def _decoded(obj: Obj) -> bytes:
    if obj.data is None:
        raise Unsupported("not a stream")
    if b"/Filter" not in obj.head:
        return obj.data
    if not re.search(rb"/Filter\s*/FlateDecode(?![\w\[])", obj.head) or b"/DecodeParms" in obj.head:
        raise Unsupported("a stream filter other than FlateDecode")
    return zlib.decompress(obj.data)


# ------------------------------------------------------------------------------------------ writing


@dataclass(frozen=True, slots=True)
class Block:
    """Objects already written (``N 0 obj ... endobj``, numbered in order, no streams), copied as a whole."""

    data: bytes
    count: int


def write(objects: Sequence[tuple[bytes, bytes | None] | Block | None], trailer: bytes) -> bytes:
    """A PDF of ``objects`` numbered 1, 2, ... in order (heads already refer to those numbers); a
    :class:`Block` of n objects is followed by n - 1 ``None``."""
    parts = [b"%PDF-1.7\n%\x80\x80\x80\x80\n\n"]
    offsets: list[int] = []
    at = len(parts[0])
    for number, entry in enumerate(objects, 1):
        if entry is None:
            continue
        if isinstance(entry, Block):
            block, start = entry.data, 0
            for n in range(number, number + entry.count):
                start = block.find(b"%d 0 obj\n" % n, start)
                if start < 0 or (start and block[start - 1] != 0x0A):
                    raise Unsupported("a block of objects that does not hold what it says")
                offsets.append(at + start)
            part = block + b"\n"
        else:
            head, data = entry
            if data is None:
                part = b"%d 0 obj\n%s\nendobj\n\n" % (number, head)
            else:
                part = b"%d 0 obj\n%s\nstream\n%s\nendstream\nendobj\n\n" % (number, head, data)
            offsets.append(at)
        parts.append(part)
        at += len(part)
    if len(offsets) != len(objects):
        raise Unsupported("objects missing")
    parts.append(b"xref\n0 %d\n0000000000 65535 f\r\n" % (len(objects) + 1))
    parts.append(b"".join([b"%010d 00000 n\r\n" % offset for offset in offsets]))
    parts.append(b"trailer\n%s\nstartxref\n%d\n%%%%EOF" % (trailer, at))
    return b"".join(parts)


def _with_length(head: bytes, data: bytes, *, drop_filter: bool = False) -> bytes:
    if drop_filter:
        head = re.sub(rb"/Filter\s*/FlateDecode", b"", head)
    if _LENGTH.search(head):
        return _LENGTH.sub(b"/Length %d" % len(data), head, count=1)
    return head[:2] + b"/Length %d" % len(data) + head[2:]


# ------------------------------------------------------------------------------------------ CFF fonts


def _cff_index(cff: bytes, at: int) -> tuple[list[bytes], int]:
    """The items of the CFF INDEX at ``at`` and where it ends."""
    (count,) = struct.unpack_from(">H", cff, at)
    if count == 0:
        return [], at + 2
    size = cff[at + 2]
    base = at + 3
    if size in (1, 2, 4):
        offsets = struct.unpack_from(f">{count + 1}{'BHxI'[size - 1]}", cff, base)
    else:  # 3 bytes each: spread into 4
        raw = cff[base : base + (count + 1) * 3]
        wide = bytearray(4 * (count + 1))
        wide[1::4], wide[2::4], wide[3::4] = raw[0::3], raw[1::3], raw[2::3]
        offsets = struct.unpack(f">{count + 1}I", wide)
    data = base + (count + 1) * size - 1
    return [cff[data + offsets[i] : data + offsets[i + 1]] for i in range(count)], data + offsets[-1]


def _encode_index(items: Sequence[bytes]) -> bytes:
    if not items:
        return b"\x00\x00"
    offsets = list(itertools.accumulate(map(len, items), initial=1))
    size = 1 if offsets[-1] < 1 << 8 else 2 if offsets[-1] < 1 << 16 else 4
    packed = struct.pack(f">{len(offsets)}{'BHxI'[size - 1]}", *offsets)
    return struct.pack(">HB", len(items), size) + packed + b"".join(items)


@dataclass(frozen=True, slots=True)
class _Operator:
    op: int  # 0-21, or 1200 + n for the escaped operator 12 n
    operands: tuple[float, ...]
    start: int  # where its first operand begins in the DICT
    end: int  # just after the operator
    int32_at: tuple[int, ...]  # where each 5-byte integer operand's 4 bytes begin (-1 when not 5-byte)


def _cff_dict(data: bytes) -> list[_Operator]:
    out: list[_Operator] = []
    operands: list[float] = []
    int32_at: list[int] = []
    start = i = 0
    while i < len(data):
        b0 = data[i]
        if b0 <= 21:
            if b0 == 12:
                op, i = 1200 + data[i + 1], i + 2
            else:
                op, i = b0, i + 1
            out.append(_Operator(op, tuple(operands), start, i, tuple(int32_at)))
            operands, int32_at, start = [], [], i
        elif b0 == 28:
            operands.append(struct.unpack_from(">h", data, i + 1)[0])
            int32_at.append(-1)
            i += 3
        elif b0 == 29:
            operands.append(struct.unpack_from(">i", data, i + 1)[0])
            int32_at.append(i + 1)
            i += 5
        elif b0 == 30:  # a real number: nibbles up to 0xf
            i += 1
            while (data[i] & 0x0F) != 0x0F and (data[i] >> 4) != 0x0F:
                i += 1
            i += 1
            operands.append(float("nan"))
            int32_at.append(-1)
        elif 32 <= b0 <= 246:
            operands.append(b0 - 139)
            int32_at.append(-1)
            i += 1
        elif 247 <= b0 <= 250:
            operands.append((b0 - 247) * 256 + data[i + 1] + 108)
            int32_at.append(-1)
            i += 2
        elif 251 <= b0 <= 254:
            operands.append(-(b0 - 251) * 256 - data[i + 1] - 108)
            int32_at.append(-1)
            i += 2
        else:
            raise Unsupported(f"CFF DICT byte {b0}")
    return out


_CHARSET, _CHARSTRINGS, _PRIVATE, _SUBRS, _FDARRAY, _FDSELECT, _ROS, _ENCODING = (
    15,
    17,
    18,
    19,
    1236,
    1237,
    1230,
    16,
)


@dataclass
class _Cff:
    """A CID-keyed CFF font as krilla writes it: the part before the data, and the data in pieces."""

    prefix: bytes  # header, Name, Top DICT, String and Global Subr INDEXes
    patch: dict[int, int]  # Top DICT operator -> where its 4-byte offset is in the prefix
    bbox: tuple[int, ...]
    charstrings: list[bytes]
    fdselect: bytes  # the FD of each glyph
    fds: list[bytes]  # each Font DICT with its Private operator cut out
    privates: list[bytes]

    @classmethod
    def read(cls, cff: bytes) -> _Cff:
        if cff[0] != 1:
            raise Unsupported("not a CFF 1 font")
        at = cff[2]
        _, at = _cff_index(cff, at)  # names
        tops, at = _cff_index(cff, at)
        top_at = at - len(tops[0]) if len(tops) == 1 else -1
        if top_at < 0:
            raise Unsupported("not one font in the CFF")
        _, at = _cff_index(cff, at)  # strings
        gsubrs, at = _cff_index(cff, at)
        if gsubrs:
            raise Unsupported("global subroutines")
        ops = {o.op: o for o in _cff_dict(tops[0])}
        if _ROS not in ops or _ENCODING in ops or _PRIVATE in ops:
            raise Unsupported("not a CID-keyed CFF font")
        patch = {}
        for op in (_CHARSET, _CHARSTRINGS, _FDARRAY, _FDSELECT):
            if op not in ops or ops[op].int32_at[0] < 0:
                raise Unsupported("CFF offsets not written as 5-byte integers")
            patch[op] = top_at + ops[op].int32_at[0]
            if int(ops[op].operands[0]) < at:
                raise Unsupported("CFF data before the end of the INDEXes")
        charstrings, _ = _cff_index(cff, int(ops[_CHARSTRINGS].operands[0]))
        count = len(charstrings)
        select_at = int(ops[_FDSELECT].operands[0])
        if cff[select_at] == 0:
            fdselect = cff[select_at + 1 : select_at + 1 + count]
        elif cff[select_at] == 3:
            (ranges,) = struct.unpack_from(">H", cff, select_at + 1)
            out = bytearray(count)
            for r in range(ranges):
                first, fd = struct.unpack_from(">HB", cff, select_at + 3 + 3 * r)
                (following,) = struct.unpack_from(">H", cff, select_at + 6 + 3 * r)
                out[first:following] = bytes([fd]) * (following - first)
            fdselect = bytes(out)
        else:
            raise Unsupported("FDSelect format")
        fd_dicts, _ = _cff_index(cff, int(ops[_FDARRAY].operands[0]))
        fds, privates = [], []
        for fd in fd_dicts:
            fd_ops = _cff_dict(fd)
            private = next((o for o in fd_ops if o.op == _PRIVATE), None)
            if private is None:
                raise Unsupported("a Font DICT without Private")
            size, offset = (int(x) for x in private.operands)
            body = cff[offset : offset + size]
            if any(o.op == _SUBRS for o in _cff_dict(body)):
                raise Unsupported("local subroutines")
            fds.append(fd[: private.start] + fd[private.end :])
            privates.append(body)
        bbox = tuple(int(x) for x in ops[5].operands) if 5 in ops else (0, 0, 0, 0)
        return cls(cff[:at], patch, bbox, charstrings, fdselect, fds, privates)

    def subset(self, glyphs: Sequence[int]) -> bytes:
        """The font with ``glyphs`` only (old glyph ids, in their new order; glyph 0 first)."""
        select = self.fdselect
        fds = [select[g] for g in glyphs]
        order = list(dict.fromkeys(fds))  # the FDs in order of first use, renumbered from 0
        renumbered = bytes(range(256)).maketrans(bytes(order), bytes(range(len(order))))
        count = len(glyphs)
        charset = b"\x02" + struct.pack(">HH", 1, count - 2) if count > 1 else b"\x00"
        fdselect = b"\x00" + bytes(fds).translate(renumbered)
        at = len(self.prefix)
        charset_at = at
        fdselect_at = charset_at + len(charset)
        private_at = fdselect_at + len(fdselect)
        fd_dicts, privates = [], []
        for fd in order:
            body = self.privates[fd]
            fd_dicts.append(
                self.fds[fd]
                + b"\x1d"
                + struct.pack(">i", len(body))
                + b"\x1d"
                + struct.pack(">i", private_at)
                + b"\x12"
            )
            privates.append(body)
            private_at += len(body)
        fdarray = _encode_index(fd_dicts)
        fdarray_at = private_at
        charstrings_at = fdarray_at + len(fdarray)
        prefix = bytearray(self.prefix)
        for op, where in (
            (_CHARSET, charset_at),
            (_FDSELECT, fdselect_at),
            (_FDARRAY, fdarray_at),
            (_CHARSTRINGS, charstrings_at),
        ):
            struct.pack_into(">i", prefix, self.patch[op], where)
        charstrings = _encode_index([self.charstrings[g] for g in glyphs])
        return b"".join((prefix, charset, fdselect, *privates, fdarray, charstrings))


# ------------------------------------------------------------------------------------------ a font


_BFCHAR = re.compile(rb"<([0-9A-Fa-f]+)>\s*<([0-9A-Fa-f]+)>")
_W_TOKEN = re.compile(rb"\[|\]|[-+]?[\d.]+")
_TAG = re.compile(rb"(/(?:BaseFont|FontName)\s*/)[A-Z]{6}\+")


@dataclass
class _Font:
    """A Type 0 font of the document (Identity-H, a CID-keyed CFF descendant), read once per document.

    Its dictionaries are kept as %-templates (``_templates``) that a letter's font fills with its object
    numbers, subset tag and widths."""

    type0: bytes  # %(cid)d, %(cmap)d, %(tag)s
    cid: tuple[bytes, bytes]  # before and after the /W array; %(descriptor)d, %(tag)s
    descriptor: bytes  # %(file)d, %(cidset)d, %(tag)s
    cff: _Cff
    widths: dict[int, bytes]
    rows: dict[int, bytes]  # each glyph's ToUnicode row after its code: "> <0041>\n"
    cmap_head: bytes
    cmap_tail: bytes
    cidset: bool

    @classmethod
    def read(cls, objects: Objects, number: int) -> _Font:
        type0 = objects[number].head
        if b"/Subtype/Type0" not in type0 or b"/Encoding/Identity-H" not in type0:
            raise Unsupported("a font that is not Type 0 with Identity-H")
        descendants = _array(type0, b"DescendantFonts")
        cid_number = _refs(descendants)[0] if descendants else None
        to_unicode = _ref(type0, b"ToUnicode")
        if cid_number is None or to_unicode is None:
            raise Unsupported("a Type 0 font without descendant or ToUnicode")
        cid = objects[cid_number].head
        if b"/Subtype/CIDFontType0" not in cid or b"/CIDToGIDMap" in cid:
            raise Unsupported("a descendant font that is not CIDFontType0")
        descriptor_number = _ref(cid, b"FontDescriptor")
        assert descriptor_number is not None
        descriptor = objects[descriptor_number].head
        file_number = _ref(descriptor, b"FontFile3")
        if file_number is None or b"/Subtype/CIDFontType0C" not in objects[file_number].head:
            raise Unsupported("a font file that is not a CID-keyed CFF")
        cff = _Cff.read(_decoded(objects[file_number]))
        if len(cff.charstrings) >= _MOST_GLYPHS:
            raise Unsupported("a font subset of more glyphs than the text operators can be told from")
        widths: dict[int, bytes] = {}
        w = _bracketed(cid, b"W")
        if w is not None:
            tokens = _W_TOKEN.findall(cid, w[0] + 3, w[1] - 1)
            i = 0
            while i < len(tokens):
                first = int(tokens[i])
                if tokens[i + 1] == b"[":
                    j = i + 2
                    while tokens[j] != b"]":
                        widths[first + j - i - 2] = tokens[j]
                        j += 1
                    i = j + 1
                else:
                    for c in range(first, int(tokens[i + 1]) + 1):
                        widths[c] = tokens[i + 2]
                    i += 3
        cmap = _decoded(objects[to_unicode])
        if b"beginbfrange" in cmap:
            raise Unsupported("a ToUnicode CMap with ranges")
        first_block = cmap.find(b"beginbfchar")
        if first_block < 0:
            raise Unsupported("a ToUnicode CMap without bfchar")
        head_end = cmap.rfind(b"\n", 0, first_block) + 1
        tail_at = cmap.rfind(b"endbfchar") + len(b"endbfchar\n")
        unicode = {int(c, 16): u for c, u in _BFCHAR.findall(cmap, head_end, tail_at)}
        cid_parts = (cid, b"") if w is None else (cid[: w[0]], cid[w[1] :])
        cidset = b"/CIDSet" in descriptor
        type0_t, cid_t, descriptor_t = _templates(type0, cid_parts, descriptor, cff.bbox, cidset)
        rows = {g: b"> <" + u + b">\n" for g, u in unicode.items()}
        return cls(type0_t, cid_t, descriptor_t, cff, widths, rows, cmap[:head_end], cmap[tail_at:], cidset)

    def write(self, out: _Out, number: int, used: Sequence[int]) -> None:
        """The font of a letter showing ``glyphs`` (the document's glyph ids, in the letter's order) as
        object ``number`` and the objects it needs: only those glyphs' outlines, widths and text."""
        glyphs = used
        cff = self.cff.subset(glyphs)
        cid_n, descriptor_n, file_n, cmap_n = out.reserve(), out.reserve(), out.reserve(), out.reserve()
        cidset_n = out.reserve() if self.cidset else None
        fill = {
            b"tag": _letter_tag(cff),
            b"cid": cid_n,
            b"cmap": cmap_n,
            b"descriptor": descriptor_n,
            b"file": file_n,
            b"cidset": cidset_n or 0,
        }
        out.put(number, self.type0 % fill)
        runs, at = [], 0
        for width, group in itertools.groupby([self.widths.get(g) for g in glyphs]):
            size = len(list(group))
            if width is not None:
                runs.append(b"%d %d %s" % (at, at + size - 1, width))
            at += size
        before, after = self.cid
        out.put(cid_n, (before % fill) + b"/W[" + b" ".join(runs) + b"]" + (after % fill))
        out.put(descriptor_n, self.descriptor % fill)
        out.put(file_n, b"<</Length %d/Subtype/CIDFontType0C>>" % len(cff), cff)
        tails = self.rows
        rows = [_ROW_HEAD[n] + tails[g] for n, g in enumerate(glyphs) if g in tails]
        blocks = [
            b"%d beginbfchar\n%sendbfchar\n" % (len(rows[i : i + 100]), b"".join(rows[i : i + 100]))
            for i in range(0, len(rows), 100)
        ]
        cmap = self.cmap_head + b"".join(blocks) + self.cmap_tail
        out.put(cmap_n, b"<</Length %d/Type/CMap/WMode 0>>" % len(cmap), cmap)
        if cidset_n is not None:
            full, rest = divmod(len(glyphs), 8)
            bits = b"\xff" * full + (bytes([(0xFF00 >> rest) & 0xFF]) if rest else b"")
            out.put(cidset_n, b"<</Length %d>>" % len(bits), bits)


_DESCENDANTS = re.compile(rb"/DescendantFonts\s*\[[^\]]*\]")
_TO_UNICODE = re.compile(rb"/ToUnicode\s*\d+ 0 R")
_DESCRIPTOR = re.compile(rb"/FontDescriptor\s*\d+ 0 R")
_FONT_FILE = re.compile(rb"/FontFile3\s*\d+ 0 R")
_BBOX = re.compile(rb"/FontBBox\s*\[[^\]]*\]")
_CIDSET = re.compile(rb"/CIDSet\s*\d+ 0 R")


def _templates(
    type0: bytes, cid: tuple[bytes, bytes], descriptor: bytes, bbox: tuple[int, ...], cidset: bool
) -> tuple[bytes, tuple[bytes, bytes], bytes]:
    """A font's dictionaries as %-templates of what each letter's font has of its own: the references to
    its other objects, the subset tag, and (from the CFF) the whole font's box."""

    def escaped(head: bytes) -> bytes:
        return _TAG.sub(rb"\g<1>%(tag)s+", head.replace(b"%", b"%%"))

    type0 = _DESCENDANTS.sub(b"/DescendantFonts[%(cid)d 0 R]", escaped(type0))
    type0 = _TO_UNICODE.sub(b"/ToUnicode %(cmap)d 0 R", type0)
    before, after = (_DESCRIPTOR.sub(b"/FontDescriptor %(descriptor)d 0 R", escaped(part)) for part in cid)
    descriptor = _FONT_FILE.sub(b"/FontFile3 %(file)d 0 R", escaped(descriptor))
    # The box of the whole font (from the CFF): the subset's own would need every outline evaluated.
    descriptor = _BBOX.sub(b"/FontBBox[%d %d %d %d]" % bbox, descriptor)
    if cidset:
        descriptor = _CIDSET.sub(b"/CIDSet %(cidset)d 0 R", descriptor)
    return type0, (before, after), descriptor


# ------------------------------------------------------------------------------------------ content

# Text as krilla writes it: each text object sets its font, positions, and shows one string or array
# (``BT 0 Tr/f0 10.5 Tf 1 0 0 -1 0 0 Tm[<0001>-20<0002>]TJ ET``). One pattern anchored on the font keeps
# the scan fast; ``_rewrite`` counts the show operators, so a string shown any other way is refused, not
# missed.
_TEXT = re.compile(
    rb"(/([^\s/\[\]<>()]+)\s+[-+\d.]+\s+Tf\s+(?:[-+\d.]+\s+)*Tm\s*)"
    rb"(\[(?:[^\]()]++|" + _LIT + rb")*+\]\s*TJ|(?:" + _LIT + rb"|<[0-9A-Fa-f]*>)\s*Tj)"
)
_STRING = re.compile(_LIT + rb"|<[0-9A-Fa-f]*>")
_SHOW = re.compile(rb"T[Jj]")
# Marked-content property lists (/Span<</MCID 3/Lang(zh-CN)>>BDC): the only strings left after _rewrite.
_PROPERTIES = re.compile(rb"<<(?:[^<>()]++|" + _LIT + rb"|<[0-9A-Fa-f]*>)*+>>")
# Below this many glyphs in a font, no glyph code has a first byte that reads as a letter, so "TJ" and
# "Tj" can only be operators (the first byte is written \000-\077 or as hex).
_MOST_GLYPHS = 0x4000


def _string_bytes(token: bytes) -> bytes:
    if token[:1] == b"<":
        return bytes.fromhex(token[1:-1].decode("ascii"))
    body = token[1:-1]
    if b"\\" in body:
        body = codecs.escape_decode(body.replace(b"\\(", b"(").replace(b"\\)", b")"))[0]
    return body


_HEX = [b"%04x" % n for n in range(_MOST_GLYPHS)]
_ROW_HEAD = [b"<%04X" % n for n in range(_MOST_GLYPHS)]  # a ToUnicode row, up to its code
_STRING_SPLIT = re.compile(rb"(" + _LIT + rb"|<[0-9A-Fa-f]*>)")


def _codes_of(token: bytes) -> tuple[int, ...]:
    raw = _string_bytes(token)
    return struct.unpack(f">{len(raw) // 2}H", raw)


# bytes.join, typed for the codes looked up in ``_Codes.show`` (a None, a code not numbered yet, raises).
_join = cast("Callable[[Iterator[bytes | None]], bytes]", b"".join)


class _Codes:
    """Renumbers the glyph codes of one font in a letter: 0 stays 0, the others in order of first use.

    ``new`` maps a code of the document to the letter's code, written as 4 hex digits."""

    __slots__ = ("new", "used")

    def __init__(self) -> None:
        self.new: dict[int, bytes] = {0: _HEX[0]}
        self.used: list[int] = [0]

    def show(self, shown: _Shown) -> bytes:
        """The show operator with its codes renumbered, in hex."""
        # One pass: a code is looked up in ``new``; the text between the strings (at key -1) is not
        # there, so its default is written. A code not numbered yet gives None, and join refuses it.
        new = self.new
        try:
            return _join(map(new.get, shown.keys, shown.between))
        except TypeError:  # codes first used here: number them in the order they come
            used = self.used
            for code in shown.keys:
                if code >= 0 and code not in new:
                    new[code] = _HEX[len(used)]
                    used.append(code)
            return _join(map(new.get, shown.keys, shown.between))


@dataclass(frozen=True, slots=True)
class _Shown:
    """A shown string or array as read once per document, as a sequence for ``_Codes.show``: each glyph
    code (``keys``) with None beside it, and the text between the strings at key -1 beside it
    (``between``: ``[<``, ``>-20<``, ``>]TJ``)."""

    keys: tuple[int, ...]
    between: tuple[bytes | None, ...]

    @classmethod
    def read(cls, show: bytes) -> _Shown:
        if show[:1] == b"[":
            parts = _STRING_SPLIT.split(show[1 : show.rindex(b"]")])
            if len(parts) == 1:  # no string at all
                return cls((-1,), (b"[" + parts[0] + b"]TJ",))
            texts = [
                b"[" + parts[0] + b"<",
                *(b">" + part + b"<" for part in parts[2:-1:2]),
                b">" + parts[-1] + b"]TJ",
            ]
            strings = [_codes_of(p) for p in parts[1::2]]
        else:
            token = _STRING.match(show)
            assert token is not None
            texts, strings = [b"<", b">Tj"], [_codes_of(token.group(0))]
        keys: list[int] = [-1]
        between: list[bytes | None] = [texts[0]]
        for codes, text in zip(strings, texts[1:], strict=True):
            keys += codes
            between += [None] * len(codes)
            keys.append(-1)
            between.append(text)
        return cls(tuple(keys), tuple(between))


class _ShownCache(dict[bytes, _Shown]):
    """Show operands as read (they are syntax only: the same bytes read the same in any document); the
    whole cache is dropped when it holds too many."""

    def __missing__(self, show: bytes) -> _Shown:
        if len(self) >= 50_000:
            self.clear()
        read = self[show] = _Shown.read(show)
        return read


_SHOWN = _ShownCache()


def _rewrite(content: bytes, fonts: dict[bytes, _Codes], cache: dict[bytes, _Shown]) -> bytes:
    """The content stream with every shown string's glyph codes renumbered for the letter (``fonts``:
    the renumbering of each font, by its name in the page's resources)."""
    # text, (font and position, font name, shown operand), text, ...
    parts = _TEXT.split(content)
    shown = (len(parts) - 1) // 4
    try:
        pairs = zip(parts[2::4], parts[3::4], strict=True)  # (font name, shown operand)
        parts[3::4] = [fonts[name].show(cache[show]) for name, show in pairs]
        parts[2::4] = [b""] * shown
    except KeyError as missing:
        raise Unsupported(f"font {missing} not in the resources") from None
    # Every show operator must have been read (T[Jj] cannot be inside a string of glyph codes).
    if shown != content.count(b"TJ") + content.count(b"Tj"):
        if shown != len(_SHOW.findall(_PROPERTIES.sub(b"", content))):
            raise Unsupported("text shown in a way this module does not read")
    return b"".join(parts)


# ------------------------------------------------------------------------------------------ a document


def _letter_tag(data: bytes) -> bytes:
    digest = hashlib.sha256(data).digest()
    return bytes(65 + b % 26 for b in digest[:6])


class _Out:
    """Objects of the PDF being written, numbered in the order they are reserved."""

    def __init__(self) -> None:
        self.objects: list[tuple[bytes, bytes | None] | Block | None] = []

    def reserve(self, count: int = 1) -> int:
        self.objects += [None] * count
        return len(self.objects) - count + 1

    def put(self, number: int, head: bytes, data: bytes | None = None) -> None:
        self.objects[number - 1] = (head, data)


_CATALOG_KEYS = frozenset(
    {
        b"Type",
        b"Pages",
        b"Metadata",
        b"Lang",
        b"StructTreeRoot",
        b"MarkInfo",
        b"ViewerPreferences",
        b"Outlines",
    }
)
_PAGE_KEYS = frozenset(
    {
        b"Type",
        b"Resources",
        b"MediaBox",
        b"CropBox",
        b"BleedBox",
        b"TrimBox",
        b"ArtBox",
        b"Rotate",
        b"StructParents",
        b"Parent",
        b"Contents",
        b"Group",
        b"Tabs",
    }
)
_TREE_KEYS = frozenset({b"Type", b"RoleMap", b"K", b"ParentTree", b"ParentTreeNextKey"})
_FONT_ENTRY = re.compile(rb"/([^\s/<>\[\]()]+)\s*(\d+) 0 R")
_STRUCT_PARENTS = re.compile(rb"/StructParents (\d+)")
_SIBLING = re.compile(rb"/(?:Next|Prev)\s*\d+ 0 R")
_NPAGES = re.compile(rb"<xmpTPg:NPages>\d+</xmpTPg:NPages>")
_INSTANCE = re.compile(rb"<xmpMM:InstanceID>[^<]*</xmpMM:InstanceID>")
_PG = re.compile(rb"/Pg (\d+) 0 R")
_TITLE = re.compile(rb"/Title\s*(<[0-9A-Fa-f]*>|" + _LIT + rb")")
_BLOCK_REF = re.compile(rb"(?<![\d.])(\d+) 0 (R|obj)")
_BLOCK_NUMBER = re.compile(rb"(\d+)(?= 0 [Ro])")
_STRUCT_ELEM = b"<</Type/StructElem"


class Document:
    """A typst PDF of one or more letters, read once, from which each letter is cut.

    typst writes the tagged structure in post-order: each element after its children, the ``Document``
    element after everything. So the elements of a letter are one run of objects, from just after the
    previous letter's last top-level element to its own last one, and are copied as one block.
    """

    def __init__(self, pdf: bytes) -> None:
        self.objects = objects = Objects(pdf)
        root, info = _ref(objects.trailer, b"Root"), _ref(objects.trailer, b"Info")
        if root is None:
            raise Unsupported("no catalog")
        self.root, self.info = root, info
        found = _ID.search(objects.trailer)
        self.document_id = found.group(1) if found else None
        self.catalog = objects[root].head
        if not set(_keys(self.catalog)) <= _CATALOG_KEYS:
            raise Unsupported("catalog entries other than pages, metadata, tags and outlines")
        pages = _ref(self.catalog, b"Pages")
        if pages is None:
            raise Unsupported("no page tree")
        self.pages_number = pages
        self.pages = _page_list(objects, pages)
        self.page_index = {page: n for n, page in enumerate(self.pages)}
        self.fonts: dict[int, _Font] = {}
        self.shown = _SHOWN  # show operands as read, shared by the letters and documents
        self._structure()
        self._outline()

    def _structure(self) -> None:
        objects = self.objects
        self.tree = _ref(self.catalog, b"StructTreeRoot")
        self.document_element: int | None = None
        self.parent_tree: dict[int, int] = {}
        self.kids: list[tuple[int, int, int | None]] = []  # top-level elements: first object, last, page
        if self.tree is None:
            return
        head = objects[self.tree].head
        if not set(_keys(head)) <= _TREE_KEYS:
            raise Unsupported("structure tree entries other than RoleMap, K, ParentTree")
        kids = _refs(_array(head, b"K") or b"")
        if len(kids) != 1 or b"/S/Document" not in objects[kids[0]].head:
            raise Unsupported("a structure tree without one Document element")
        self.document_element = kids[0]
        inside = _array(objects[kids[0]].head, b"K")
        if inside is None or re.sub(rb"\d+ 0 R|\s", b"", inside):
            raise Unsupported("a Document element with content of its own")
        tops = _refs(inside)
        if not tops or tops != sorted(set(tops)) or tops[-1] >= self.document_element:
            raise Unsupported("top-level elements not in order before the Document element")
        first = tops[0]
        while first - 1 in objects and self._is_element(first - 1):
            first -= 1
        pdf = objects.pdf
        for top in tops:
            found = _PG.search(pdf, objects.offsets[first], objects.ends[top])
            page = self.page_index.get(int(found.group(1))) if found else None
            self.kids.append((first, top, page))
            first = top + 1
        nums = self._nums(head[head.find(b"/ParentTree") :])
        for page in self.pages:
            key = _STRUCT_PARENTS.search(objects[page].head)
            if key is None or int(key.group(1)) not in nums:
                raise Unsupported("a page without its parent tree entry")
        if len(nums) != len(self.pages):
            raise Unsupported("parent tree entries that are not pages' (annotations)")
        self.parent_tree = nums

    def _is_element(self, number: int) -> bool:
        at = self.objects.offsets[number]
        return self.objects.pdf.startswith(b"%d 0 obj\n%s" % (number, _STRUCT_ELEM), at)

    def _nums(self, value: bytes) -> dict[int, int]:
        match = re.match(rb"/ParentTree\s*(\d+) 0 R", value)
        body = self.objects[int(match.group(1))].head if match else value
        nums = re.search(rb"/Nums\s*\[([^\]]*)\]", body)
        out: dict[int, int] = {}
        if nums is not None:
            out.update({int(k): int(v) for k, v in re.findall(rb"(\d+)\s+(\d+) 0 R", nums.group(1))})
        if match is not None:
            for kid in _refs(_array(body, b"Kids") or b""):
                out.update(self._nums(self.objects[kid].head))
        return out

    def _outline(self) -> None:
        self.outlines = _ref(self.catalog, b"Outlines")
        self.items: list[tuple[int, int]] = []  # the top-level bookmarks and the page each points to
        if self.outlines is None:
            return
        item = _ref(self.objects[self.outlines].head, b"First")
        while item is not None:
            head = self.objects[item].head
            dest = _ref(head, b"Dest")
            target = self.objects[dest].head if dest is not None else (_array(head, b"Dest") or b"")
            pages = _refs(target)
            if b"A" in _keys(head) or not pages or pages[0] not in self.page_index:
                raise Unsupported("a bookmark that is not a destination on a page")
            self.items.append((item, self.page_index[pages[0]]))
            item = _ref(head, b"Next")

    # -------------------------------------------------------------------------------------- letters

    def letters(self, count: int) -> list[bytes]:
        """Each of ``count`` letters as its own PDF; a letter starts at its title's bookmark."""
        if count == 1:
            starts = [0]
        else:
            starts = [page for _, page in self.items]
            if len(starts) != count or starts[0] != 0 or starts != sorted(set(starts)):
                raise Unsupported(f"{len(starts)} bookmarks for {count} letters")
            if any(page is None for _, _, page in self.kids):
                raise Unsupported("a top-level element with no content: which letter is it in?")
            # The document's title is each letter's (its title is its bookmark): letters of other kinds
            # or languages would carry the wrong title and metadata.
            title = _TITLE.search(self.objects[self.info].head) if self.info is not None else None
            if title is None or any(
                (found := _TITLE.search(self.objects[item].head)) is None or found.group(1) != title.group(1)
                for item, _ in self.items
            ):
                raise Unsupported("letters with another title than the document's")
        bounds = list(zip(starts, [*starts[1:], len(self.pages)], strict=True))
        letter_of = [n for n, (first, end) in enumerate(bounds) for _ in range(first, end)]
        kids: list[list[tuple[int, int]]] = [[] for _ in bounds]
        for lo, hi, page in self.kids:
            kids[0 if count == 1 or page is None else letter_of[page]].append((lo, hi))
        items: list[list[int]] = [[] for _ in bounds]
        for item, page in self.items:
            items[letter_of[page]].append(item)
        return [
            self._letter(self.pages[first:end], kids[n], items[n]) for n, (first, end) in enumerate(bounds)
        ]

    def _font(self, number: int) -> _Font:
        font = self.fonts.get(number)
        if font is None:
            font = self.fonts[number] = _Font.read(self.objects, number)
        return font

    def _letter(self, pages: list[int], kids: list[tuple[int, int]], items: list[int]) -> bytes:
        objects = self.objects
        out = _Out()
        new: dict[int, int] = {}  # old number -> the letter's
        build: dict[int, Callable[[int], None]] = {}  # objects made anew for the letter
        pending: list[int] = []  # reached and numbered, not written yet

        def copy(old: int) -> int:
            """The letter's number of an object of the document, numbered when first reached."""
            number = new.get(old)
            if number is None:
                number = new[old] = out.reserve()
                pending.append(old)
            return number

        # The content first: which glyphs each font shows, in order.
        codes: dict[int, _Codes] = {}
        contents: dict[int, bytes] = {}
        for page in pages:
            head = objects[page].head
            if not set(_keys(head)) <= _PAGE_KEYS:
                raise Unsupported("page entries other than resources, boxes, contents and tags")
            resources, content = _ref(head, b"Resources"), _ref(head, b"Contents")
            if resources is None or content is None:
                raise Unsupported("inline page resources, or contents that are not one stream")
            res = objects[resources].head
            if b"/XObject" in res or b"/Pattern" in res or b"/Shading" in res:
                raise Unsupported("XObjects, patterns or shadings")
            font_dict = re.search(rb"/Font\s*<<([^>]*)>>", res)
            fonts = {}
            for name, ref in _FONT_ENTRY.findall(font_dict.group(1)) if font_dict else ():
                self._font(int(ref))
                fonts[name] = codes.setdefault(int(ref), _Codes())
            contents[content] = _rewrite(_decoded(objects[content]), fonts, self.shown)

        def put_content(number: int, data: bytes) -> None:
            out.put(number, b"<</Length %d>>" % len(data), data)

        for old, data in contents.items():
            build[old] = functools.partial(put_content, data=data)
        for old, font in self.fonts.items():
            build[old] = functools.partial(font.write, out, used=codes[old].used if old in codes else [0])

        # The letter's own catalog, page tree, structure tree root, Document element and outline.
        catalog_n = out.reserve()
        info_n = copy(self.info) if self.info is not None else None
        pages_n = new[self.pages_number] = out.reserve()
        page_numbers = [out.reserve() for _ in pages]
        new.update(zip(pages, page_numbers, strict=True))
        tree_n = document_n = outlines_n = metadata_n = None
        if self.tree is not None and self.document_element is not None:
            tree_n = new[self.tree] = out.reserve()
            document_n = new[self.document_element] = out.reserve()
        if self.outlines is not None:
            outlines_n = new[self.outlines] = out.reserve()
        item_numbers = [out.reserve() for _ in items]
        new.update(zip(items, item_numbers, strict=True))
        metadata = _ref(self.catalog, b"Metadata")
        if metadata is not None:
            metadata_n = new[metadata] = out.reserve()
        # The letter's structure elements: one run of objects, renumbered as a whole.
        block = None
        if kids and document_n is not None and self.document_element is not None:
            lo, hi = kids[0][0], kids[-1][1]
            base = out.reserve(hi - lo + 1)
            allowed = {p: new[p] for p in pages}
            allowed[self.document_element] = document_n

            table = {b"%d" % n: b"%d" % (base + n - lo) for n in range(lo, hi + 1)}
            table.update({b"%d" % old: b"%d" % number for old, number in allowed.items()})
            raw = objects.pdf[objects.offsets[lo] : objects.ends[hi]]
            count = hi - lo + 1
            # The run holds objects lo..hi, one after the other, each a structure element, nothing else.
            ends, offsets = objects.ends, objects.offsets
            if (
                not all(ends[n] == offsets[n + 1] for n in range(lo, hi))
                or raw.count(b" 0 obj\n") != count
                or raw.count(_STRUCT_ELEM) != count
                or b"stream\n" in raw
            ):
                raise Unsupported("structure elements not written one after the other")
            if b"(" in raw and any(_BLOCK_REF.search(text) for text in _LITERAL.findall(raw)):
                raise Unsupported("a string in the structure tree that reads like a reference")
            parts = _BLOCK_NUMBER.split(raw)  # text, number, text, ...
            try:
                parts[1::2] = [table[number] for number in parts[1::2]]
            except KeyError:
                raise Unsupported("a structure element refers outside its letter") from None
            block = Block(b"".join(parts).rstrip(b"\n"), count)
            out.objects[base - 1] = block
            for n in range(lo, hi + 1):
                new[n] = base + n - lo
        keys = []
        for n, (page, number) in enumerate(zip(pages, page_numbers, strict=True)):
            head = objects[page].head
            key = _STRUCT_PARENTS.search(head)
            keys.append(int(key.group(1)) if key else None)
            out.put(number, _renumber(_STRUCT_PARENTS.sub(b"/StructParents %d" % n, head), copy))
        kids_list = b" ".join(b"%d 0 R" % p for p in page_numbers)
        out.put(pages_n, b"<</Type/Pages/Count %d/Kids[%s]>>" % (len(pages), kids_list))
        tree, document = self.tree, self.document_element
        if tree_n is not None and document_n is not None and tree is not None and document is not None:
            element_head = objects[document].head
            inside = b" ".join(b"%d 0 R" % new[hi] for _, hi in kids)
            element_head = re.sub(rb"/K\s*\[[^\]]*\]", lambda _: b"/K[" + inside + b"]", element_head)
            out.put(document_n, re.sub(rb"/P\s*\d+ 0 R", b"/P %d 0 R" % tree_n, element_head))
            nums = b" ".join(
                b"%d %d 0 R" % (n, copy(self.parent_tree[key]))
                for n, key in enumerate(keys)
                if key is not None
            )
            head = objects[tree].head
            role_map = re.search(rb"/RoleMap\s*<<[^>]*>>", head)
            out.put(
                tree_n,
                b"<</Type/StructTreeRoot%s/K[%d 0 R]/ParentTree<</Nums[%s]>>/ParentTreeNextKey %d>>"
                % (role_map.group(0) if role_map else b"", document_n, nums, len(pages)),
            )
        if outlines_n is not None:
            if item_numbers:
                first, last = item_numbers[0], item_numbers[-1]
                out.put(
                    outlines_n,
                    b"<</Type/Outlines/First %d 0 R/Last %d 0 R/Count %d>>" % (first, last, len(items)),
                )
            else:
                out.put(outlines_n, b"<</Type/Outlines/Count 0>>")
            for n, (item, number) in enumerate(zip(items, item_numbers, strict=True)):
                head = _SIBLING.sub(b"", objects[item].head)
                links = b""
                if n > 0:
                    links += b"/Prev %d 0 R" % item_numbers[n - 1]
                if n + 1 < len(item_numbers):
                    links += b"/Next %d 0 R" % item_numbers[n + 1]
                out.put(number, _renumber(head[:-2] + links + head[-2:], copy))
        out.put(catalog_n, _renumber(self.catalog, copy))
        while pending:  # everything reached from the letter's own objects, in the order reached
            old = pending.pop()
            make = build.get(old)
            if make is not None:
                make(new[old])
                continue
            obj = objects[old]
            if b"/Type/Page" in obj.head or _STRUCT_ELEM in obj.head:
                raise Unsupported("a page or structure element of another letter is referred to")
            out.put(new[old], _renumber(obj.head, copy), obj.data)
        # Everything is numbered: the letter's id is a digest of it, in the XMP metadata and the trailer.
        digest = hashlib.sha256()
        for entry in out.objects:
            if isinstance(entry, Block):
                digest.update(entry.data)
            elif entry is not None:
                digest.update(entry[0])  # a font file's head names its tag, a digest of its bytes
                if entry[1] is not None and b"/Subtype/CIDFontType0C" not in entry[0]:
                    digest.update(entry[1])
        instance = base64.b64encode(digest.digest()[:16])
        if metadata_n is not None and metadata is not None:
            xmp = _decoded(objects[metadata])
            xmp = _NPAGES.sub(b"<xmpTPg:NPages>%d</xmpTPg:NPages>" % len(pages), xmp)
            xmp = _INSTANCE.sub(b"<xmpMM:InstanceID>" + instance + b"</xmpMM:InstanceID>", xmp)
            out.put(metadata_n, _with_length(objects[metadata].head, xmp, drop_filter=True), xmp)
        trailer = b"<</Size %d/Root %d 0 R" % (len(out.objects) + 1, catalog_n)
        if info_n is not None:
            trailer += b"/Info %d 0 R" % info_n
        if self.document_id is not None:
            trailer += b"/ID[%s(%s)]" % (self.document_id, instance)
        return write(out.objects, trailer + b">>")


def split(pdf: bytes, letters: int) -> list[bytes]:
    """The ``letters`` letters of a typst document of letters, each as its own PDF (see the module)."""
    return Document(pdf).letters(letters)


# ------------------------------------------------------------------------------------------ merging


# Objects up to this size that are the same in two letters (a colour profile, a font subset with the
# same glyphs) are written once; bigger ones are each letter's own fonts.
_SHARED_AT_MOST = 16384
_STRUCT_PARENT = re.compile(rb"/StructParent \d+")


def merge(pdfs: Sequence[bytes]) -> bytes:
    """One PDF of the pages of ``pdfs`` in order (:class:`Merger`, in memory). The same PDFs give the
    same bytes."""
    merger = Merger(io.BytesIO())
    for pdf in pdfs:
        merger.add(pdf)
    out = io.BytesIO()
    merger.finish(out)
    return out.getvalue()


_HEADER = b"%PDF-1.7\n%\x80\x80\x80\x80\n\n"  # as ``write`` starts a file


class Merger:
    """Joins PDFs page by page into one print file, each PDF written out as it is added, so that a print
    batch of any size is joined in the memory of one letter.

    The file has the pages, their content, resources and annotations (no tags, bookmarks or metadata: the
    print shop prints pages). A small object identical to one already written (the colour profile) is not
    written again; it is remembered by its sha256, not its bytes, and only where a later PDF could have
    it (not a letter's fonts, which refer to its own font programs). The objects are numbered as they come
    (the catalog 1, the page tree 2, then each PDF's pages and what they use), written to ``body`` as
    each PDF is added; :meth:`finish` writes the file: the header, the catalog and the page tree (known
    only at the end), the body copied, the cross-reference table. The same PDFs give the same bytes as
    ``write`` would for the same objects.
    """

    def __init__(self, body: BinaryIO) -> None:
        self._body = body
        self._size = 0  # bytes written to the body
        self._offsets = array.array("q")  # where in the body objects 3, 4, ... start
        self._kids = array.array("q")  # the page objects, in order
        self._shared: dict[bytes, int] = {}  # sha256 of a small object's head and data -> its number
        self._finished = False

    @property
    def pages(self) -> int:
        return len(self._kids)

    def add(self, pdf: bytes) -> None:
        """Append the pages of ``pdf``. After :class:`Unsupported` the merger is unchanged."""
        if self._finished:
            raise ValueError("the merger has finished")
        objects = Objects(pdf)
        root = _ref(objects.trailer, b"Root")
        pages_root = _ref(objects[root].head, b"Pages") if root is not None else None
        if pages_root is None:
            raise Unsupported("no page tree")
        pages = _page_list(objects, pages_root)
        first = len(self._offsets) + 3  # this PDF's first object number
        out: list[tuple[bytes, bytes | None] | None] = []
        shared: dict[bytes, int] = {}  # small objects first written by this PDF that a later one may share
        # Objects no later PDF can share: this PDF's pages, its big streams, and whatever refers to them
        # (a later PDF's objects refer to this one's only through shared objects). Remembered for this
        # PDF only, so that the merger's memory grows with the objects letters share, not with letters.
        mine: dict[bytes, int] = {}
        own: set[int] = set()
        # Each page is numbered first, so that an annotation's page (/P, a link's destination) is found.
        done: dict[int, int] = {}
        for page in pages:
            out.append(None)
            done[page] = first + len(out) - 1
            own.add(done[page])

        def copy(old: int) -> int:
            number = done.get(old)
            if number is not None:
                return number
            obj = objects[old]
            if b"/Type/Page" in obj.head or _STRUCT_ELEM in obj.head:
                raise Unsupported("a page's resources refer to another document's pages or to tags")
            head = _renumber(_STRUCT_PARENT.sub(b"", obj.head), copy)
            if obj.data is not None and len(obj.data) > _SHARED_AT_MOST:
                out.append((head, obj.data))  # a letter's own font: no other letter has it
                number = first + len(out) - 1
                own.add(number)
            else:
                key = hashlib.sha256(head + b"\0" + (obj.data or b"")).digest()
                number = self._shared.get(key) or shared.get(key) or mine.get(key)
                if number is None:
                    out.append((head, obj.data))
                    number = first + len(out) - 1
                    if own.isdisjoint(_refs(head)):
                        shared[key] = number
                    else:
                        mine[key] = number
                        own.add(number)
            done[old] = number
            return number

        for page in pages:
            head = re.sub(rb"/StructParents \d+|/Parent\s*\d+ 0 R", b"", objects[page].head)
            head = _renumber(head, copy)
            out[done[page] - first] = (head[:-2] + b"/Parent 2 0 R" + head[-2:], None)
        parts = []
        for number, entry in enumerate(out, first):
            assert entry is not None  # every page was filled in above
            self._offsets.append(self._size)
            head, data = entry
            if data is None:
                part = b"%d 0 obj\n%s\nendobj\n\n" % (number, head)
            else:
                part = b"%d 0 obj\n%s\nstream\n%s\nendstream\nendobj\n\n" % (number, head, data)
            parts.append(part)
            self._size += len(part)
        self._body.write(b"".join(parts))
        self._shared.update(shared)
        self._kids.extend(done[page] for page in pages)

    def finish(self, out: BinaryIO) -> str:
        """Write the print file to ``out``; the sha256 of what was written."""
        self._finished = True
        digest = hashlib.sha256()

        def put(data: bytes) -> None:
            out.write(data)
            digest.update(data)

        catalog = b"1 0 obj\n<</Type/Catalog/Pages 2 0 R>>\nendobj\n\n"
        tree = b"2 0 obj\n<</Type/Pages/Count %d/Kids[%s]>>\nendobj\n\n" % (
            len(self._kids),
            b" ".join(b"%d 0 R" % k for k in self._kids),
        )
        put(_HEADER)
        put(catalog)
        put(tree)
        self._body.flush()
        self._body.seek(0)
        while block := self._body.read(1 << 20):
            put(block)
        start = len(_HEADER) + len(catalog) + len(tree)
        count = len(self._offsets) + 2
        put(b"xref\n0 %d\n0000000000 65535 f\r\n" % (count + 1))
        rows = [b"%010d 00000 n\r\n" % offset for offset in (len(_HEADER), len(_HEADER) + len(catalog))]
        for at in range(0, len(self._offsets), 65536):
            rows += [b"%010d 00000 n\r\n" % (start + o) for o in self._offsets[at : at + 65536]]
            put(b"".join(rows))
            rows = []
        put(b"".join(rows))
        put(b"trailer\n<</Size %d/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF" % (count + 1, start + self._size))
        return digest.hexdigest()

"""The print file joined as the first version of ``pdfparts.merge`` joined it: every object in a list, then
written at once by ``pdfparts.write``, small objects shared by their bytes (not their sha256). Kept as the
tests' oracle: ``pdfparts.Merger`` must write these bytes (a batch re-run writes the file first written)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from duecourse.letters.pdfparts import (
    _SHARED_AT_MOST,
    _STRUCT_ELEM,
    _STRUCT_PARENT,
    Block,
    Objects,
    Unsupported,
    _page_list,
    _ref,
    _renumber,
    write,
)


def merge_at_once(pdfs: Sequence[bytes]) -> bytes:
    """One PDF of the pages of ``pdfs`` in order: pages, their content, resources and annotations (no
    tags, bookmarks or metadata: the print shop prints pages). A small object identical to one already
    written is not written again. The same PDFs give the same bytes."""
    out: list[tuple[bytes, bytes | None] | Block | None] = [None, None]  # the catalog and the page tree
    written: dict[bytes, int] = {}
    kids: list[int] = []
    for pdf in pdfs:
        objects = Objects(pdf)
        root = _ref(objects.trailer, b"Root")
        pages_root = _ref(objects[root].head, b"Pages") if root is not None else None
        if pages_root is None:
            raise Unsupported("no page tree")
        pages = _page_list(objects, pages_root)
        # Each page is numbered first, so that an annotation's page (/P, a link's destination) is found.
        done: dict[int, int] = {}
        for page in pages:
            out.append(None)
            done[page] = len(out)
        kids += [done[page] for page in pages]

        def copy(old: int, objects: Objects = objects, done: dict[int, int] = done) -> int:
            number = done.get(old)
            if number is not None:
                return number
            obj = objects[old]
            if b"/Type/Page" in obj.head or _STRUCT_ELEM in obj.head:
                raise Unsupported("a page's resources refer to another document's pages or to tags")
            head = _renumber(_STRUCT_PARENT.sub(b"", obj.head), copy)
            if obj.data is not None and len(obj.data) > _SHARED_AT_MOST:
                out.append((head, obj.data))  # a letter's own font: no other letter has it
                number = len(out)
            else:
                key = head + b"\0" + (obj.data or b"")
                number = written.get(key)
                if number is None:
                    out.append((head, obj.data))
                    number = written[key] = len(out)
            done[old] = number
            return number

        for page in pages:
            head = re.sub(rb"/StructParents \d+|/Parent\s*\d+ 0 R", b"", objects[page].head)
            head = _renumber(head, copy)
            out[done[page] - 1] = (head[:-2] + b"/Parent 2 0 R" + head[-2:], None)
    out[0] = (b"<</Type/Catalog/Pages 2 0 R>>", None)
    out[1] = (
        b"<</Type/Pages/Count %d/Kids[%s]>>" % (len(kids), b" ".join(b"%d 0 R" % k for k in kids)),
        None,
    )
    return write(out, b"<</Size %d/Root 1 0 R>>" % (len(out) + 1))

"""The planner's media estimates: PDF pages (object streams, page tree, fallbacks), documents."""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest

from langchain_claude_relay import tokens as tokens_module
from langchain_claude_relay.request import Block
from langchain_claude_relay.tokens import (
    PDF_BYTES_PER_PAGE,
    PDF_MAX_PAGES,
    PDF_MIN_PAGE_BYTES,
    PDF_PAGE_TOKENS,
    block_parts,
    image_tokens,
    pdf_pages,
)

REAL_PDFS = {  # pdfTeX output (PDF 1.5, page objects in compressed object streams)
    "/usr/share/doc/libtasn1-doc/libtasn1.pdf": 36,
    "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf": 17,
}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def objstm_pdf(pages: int, *, tree: bool = True, per_node: int = 6) -> bytes:
    """A PDF as pdfTeX writes it: the page tree and the pages in a compressed object stream.

    ``tree``: with the page tree's nodes (their ``/Count``); without, only the page objects.
    """
    nodes = -(-pages // per_node)
    first_node, first_page = 3, 3 + nodes
    objects: list[tuple[int, bytes]] = []
    if tree:
        kids = " ".join(f"{first_node + k} 0 R" for k in range(nodes))
        objects.append((2, f"<<\n/Type /Pages\n/Count {pages}\n/Kids [{kids}]\n>>".encode()))
        for k in range(nodes):
            count = min(per_node, pages - k * per_node)
            kids = " ".join(f"{first_page + k * per_node + i} 0 R" for i in range(count))
            node = f"<<\n/Type /Pages\n/Count {count}\n/Parent 2 0 R\n/Kids [{kids}]\n>>"
            objects.append((first_node + k, node.encode()))
    for i in range(pages):
        parent = first_node + i // per_node
        page = f"<<\n/Type /Page\n/Contents {1000 + i} 0 R\n/Parent {parent} 0 R\n>>"
        objects.append((first_page + i, page.encode()))
    header, body = b"", b""
    for number, text in objects:
        header += b"%d %d " % (number, len(body))
        body += text + b"\n"
    stream = zlib.compress(header + body)
    return (
        b"%PDF-1.5\n%\xd0\xd4\xc5\xd8\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"
        + b"900 0 obj\n<<\n/Type /ObjStm\n/N %d\n/First %d\n/Length %d\n/Filter /FlateDecode\n>>\n"
        % (len(objects), len(header), len(stream))
        + b"stream\n"
        + stream
        + b"\nendstream\nendobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    )


def pdf_media(raw: bytes) -> float:
    """The planner's media estimate of a base64 PDF document block."""
    source = {"type": "base64", "media_type": "application/pdf", "data": _b64(raw)}
    return block_parts(Block("document", {"source": source})).media


@pytest.mark.parametrize("pages", [1, 7, 36, 250])
def test_pages_in_object_streams_are_counted(pages: int) -> None:
    assert pdf_media(objstm_pdf(pages)) == pages * PDF_PAGE_TOKENS


def test_page_objects_count_without_a_page_tree() -> None:
    assert pdf_media(objstm_pdf(9, tree=False)) == 9 * PDF_PAGE_TOKENS


def test_the_page_tree_root_wins_over_stale_page_objects() -> None:
    # an incremental update that rewrote one page leaves the old page object behind
    raw = objstm_pdf(4) + b"1001 0 obj\n<< /Type /Page /Parent 3 0 R >>\nendobj\n"
    assert pdf_media(raw) == 4 * PDF_PAGE_TOKENS


@pytest.mark.parametrize(("path", "pages"), sorted(REAL_PDFS.items()))
def test_real_pdftex_files(path: str, pages: int) -> None:
    if not Path(path).is_file():
        pytest.skip(f"{path} is not installed")
    assert pdf_media(Path(path).read_bytes()) == pages * PDF_PAGE_TOKENS


def test_a_pdf_without_readable_pages_is_estimated_from_its_size() -> None:
    # object streams under another filter (or encrypted): nothing to count; not a flat 3 pages
    raw = b"%PDF-1.7\n" + bytes(range(256)) * (2_000_000 // 256)
    assert pdf_pages(_b64(raw)) == round(len(raw) / PDF_BYTES_PER_PAGE) == 40
    assert pdf_pages(_b64(b"%PDF-1.7\n%%EOF")) == 1


def test_a_forged_page_count_is_bounded_by_the_file_size() -> None:
    raw = b"%PDF-1.4\n<< /Type /Pages /Kids [] /Count 999999999 >>\n%%EOF\n"
    assert pdf_pages(_b64(raw)) == len(raw) // PDF_MIN_PAGE_BYTES == 3


def test_inflating_is_capped() -> None:
    """A zip bomb in every object stream: each inflates to 50 MB; the counter reads 8 MB."""
    bomb = zlib.compress(b"<< /Type /Page >>\n" * 3_000_000, 9)
    one = (
        b"<< /Type /ObjStm /N 1 /First 1 /Filter /FlateDecode >>\nstream\n"
        + bomb
        + b"\nendstream\n"
    )
    raw = b"%PDF-1.5\n" + one * 300
    pages = pdf_pages(_b64(raw))
    assert 1 <= pages <= min(len(raw) // PDF_MIN_PAGE_BYTES, PDF_MAX_PAGES)


def test_a_30_mb_pdf_counts_its_pages_past_its_padding() -> None:
    padding = (
        b"999 0 obj\n<< /Length 30000000 >>\nstream\n" + b"\x8f" * 30_000_000 + b"\nendstream\n"
    )
    raw = objstm_pdf(12)
    raw = raw[:9] + padding + raw[9:]
    assert pdf_pages(_b64(raw)) == 12


def test_forged_counts_cannot_stall_the_count_or_inflate_the_estimate() -> None:
    # a few KB inflating to /Count after /Count made the old search quadratic (26 s a call);
    # 300 object streams of page objects counted a billion tokens
    bomb = zlib.compress(b"/Count 1 " * 200_000, 9)
    pdf = b"%PDF-1.5\n1 0 obj << /Type /ObjStm /Filter /FlateDecode >> stream\n" + bomb
    assert pdf_pages(_b64(pdf + b"\nendstream endobj\n%%EOF")) == 1  # no page tree: by size
    streams = [
        b"%d 0 obj << /Type /ObjStm /Filter /FlateDecode >> stream\n" % i
        + zlib.compress(b"<< /Type /Page >>" * 2000, 9)
        + b"\nendstream endobj\n"
        for i in range(300)
    ]
    assert pdf_pages(_b64(b"%PDF-1.5\n" + b"".join(streams))) == PDF_MAX_PAGES
    # page-tree dictionaries packed into every stream: each stretch read once, not per node
    nodes = [
        b"%d 0 obj << /Type /ObjStm /Filter /FlateDecode >> stream\n" % i
        + zlib.compress(b"/Type/Pages/Count 1 " * 1600, 9)
        + b"\nendstream endobj\n"
        for i in range(256)
    ]
    calls = 0
    original = tokens_module._PDF_COUNT

    class Counting:
        def finditer(self, *args: Any) -> Any:
            nonlocal calls
            calls += 1
            return original.finditer(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokens_module, "_PDF_COUNT", Counting())
        assert pdf_pages(_b64(b"%PDF-1.5\n" + b"".join(nodes))) == 1
    assert calls <= 257  # one stretch per stream (and the file): was 4,096 nodes per stream


def test_a_file_of_dictionary_edges_is_read_without_listing_them() -> None:
    """24 MB of ``<`` made the counter list every edge (about 1 GB, 6 s): it keeps none now."""
    import tracemalloc

    raw = b"%PDF-1.4\n" + b"<" * 2_000_000 + b"<< /Type /Pages /Kids [] /Count 7 >>"
    tracemalloc.start()
    try:
        counts = tokens_module._pdf_pages_in(raw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert counts == (7, 0)
    assert peak < 1_000_000  # the edge list was 2 million positions (over 60 MB)


def test_object_stream_markers_before_one_distant_stream_read_it_once() -> None:
    """256 ``/Type/ObjStm`` then one ``stream`` far away: it was searched and inflated 256 times."""
    markers = b"".join(b"%d 0 obj << /Type /ObjStm >>\n" % i for i in range(256))
    body = zlib.compress(b"<< /Type /Pages /Kids [] /Count 5 >>")
    raw = b"%PDF-1.5\n" + markers + b" " * 100_000 + b"stream\n" + body + b"\nendstream\n"
    opened = 0

    class CountingZlib:
        error = zlib.error

        def decompressobj(self) -> Any:
            nonlocal opened
            opened += 1
            return zlib.decompressobj()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tokens_module, "zlib", CountingZlib())
        assert pdf_pages(_b64(raw)) == 5
    assert opened == 1


def test_document_context_is_text_claude_reads() -> None:
    source = {"type": "text", "media_type": "text/plain", "data": "The grass is green."}
    parts = block_parts(Block("document", {"source": source, "title": "T", "context": "C"}))
    assert parts.prose == ("T", "C", "The grass is green.")


def test_images_in_a_content_document_are_counted() -> None:
    png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + struct.pack(">II", 300, 250) + b"\0" * 16
    image = {"type": "base64", "media_type": "image/png", "data": _b64(png)}
    content = [{"type": "text", "text": "caption"}, {"type": "image", "source": image}]
    parts = block_parts(Block("document", {"source": {"type": "content", "content": content}}))
    assert (parts.prose, parts.media) == (("caption",), float(image_tokens(image)))

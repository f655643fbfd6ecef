"""The data area's allocator (store side only): size classes on pages, empty pages reused.

The data area is cut into pages (4 KiB to 256 KiB: 1/128 of the memory limit, so that there are
more pages than block sizes in use). A page serves one block size
(:func:`~blinkstore_gunicorn.shm.layout.block_size`) until every block on it is free again; then
its memory goes back to the system (``MADV_REMOVE``) and the page to the pool, for any size.
Once the region is sealed against writes (:meth:`Blocks.keep_pages`), pages still go to the
pool, but keep their memory: the kernel refuses to punch holes in a sealed memfd. So a workload
whose value sizes shift does not strand the area in the sizes it no longer uses, the way fixed
per-size free lists would.

The C helper has a twin (``_native.Blocks``) that picks the same block for the same calls, so
the C and Python writers make byte-identical regions (``tests/unit/test_shm_writers.py``).
"""

from __future__ import annotations

import mmap

__all__ = ["MAX_PAGE", "Blocks", "page_size"]

#: Largest page, and so the largest block (larger values stay in the store's heap).
MAX_PAGE = 256 * 1024
_MIN_PAGE = 4096


def page_size(memory_limit: int) -> int:
    """Pages small enough that the data area has more of them than there are block sizes."""
    if not memory_limit:
        return MAX_PAGE
    return max(_MIN_PAGE, min(MAX_PAGE, 1 << ((memory_limit // 128).bit_length() - 1)))


class Blocks:
    """Allocates blocks in ``[start, end)`` of ``mm`` (both multiples of ``page``, a power of 2)."""

    __slots__ = (
        "_end",
        "_live",
        "_mm",
        "_next",
        "_page",
        "_pages",
        "_partial",
        "_pool",
        "_returns_pages",
        "_shift",
        "_size",
        "_start",
    )

    def __init__(self, mm: mmap.mmap, start: int, end: int, page: int) -> None:
        self._mm = mm
        self._page = page
        self._shift = page.bit_length() - 1
        self._start = start
        self._end = end
        self._returns_pages = True
        self._reset()

    def _reset(self) -> None:
        self._pages = 0  # pages ever handed out; the ones above it were never touched
        self._pool: list[int] = []  # pages handed back
        self._partial: dict[int, dict[int, list[int]]] = {}  # size -> {page: free blocks}
        self._live: dict[int, int] = {}  # page -> blocks in use
        self._next: dict[int, int] = {}  # page -> first block never handed out
        self._size: dict[int, int] = {}  # page -> its block size

    def keep_pages(self) -> None:
        """Stop giving empty pages' memory back (the region is sealed against writes)."""
        self._returns_pages = False

    def alloc(self, size: int) -> int:
        """The offset of a free block of ``size`` bytes, or 0 when no page can give one."""
        pages = self._partial.get(size)
        if pages:
            page = next(iter(pages))
            free = pages[page]
            if free:
                block = free.pop()
            else:
                block = self._next[page]
                self._next[page] = block + size
            if not free and self._next[page] + size > self._page_end(page):
                del pages[page]
            self._live[page] += 1
            return block
        if size > self._page:
            return 0
        if self._pool:
            page = self._pool.pop()
        elif self._start + (self._pages + 1) * self._page <= self._end:
            page = self._pages
            self._pages += 1
        else:
            return 0
        block = self._start + page * self._page
        self._live[page] = 1
        self._size[page] = size
        self._next[page] = block + size
        if block + 2 * size <= self._page_end(page):
            self._partial.setdefault(size, {})[page] = []
        return block

    def free(self, block: int) -> int:
        """Give ``block`` back (no slot points at it any more); return its size."""
        page = (block - self._start) >> self._shift
        size = self._size[page]
        live = self._live[page] - 1
        pages = self._partial.setdefault(size, {})
        if live:
            self._live[page] = live
            pages.setdefault(page, []).append(block)
            return size
        pages.pop(page, None)
        del self._live[page], self._next[page], self._size[page]
        if self._returns_pages:
            self._mm.madvise(mmap.MADV_REMOVE, self._start + page * self._page, self._page)
        self._pool.append(page)
        return size

    def clear(self) -> None:
        """Free everything and return the touched pages' memory (unless kept)."""
        if self._pages and self._returns_pages:
            self._mm.madvise(mmap.MADV_REMOVE, self._start, self._pages * self._page)
        self._reset()

    def close(self) -> None:
        """Forget every block (the region goes; the C twin lets its mapping go here)."""
        self._reset()
        self._end = self._start

    def _page_end(self, page: int) -> int:
        return self._start + (page + 1) * self._page

"""One module per board, each with a :class:`~ingest.board.Board` subclass and its decoder.

Every module also provides ``decoder_from_header(header) -> Decoder`` so a raw capture can be decoded
again without the device (:mod:`ingest.replay`).
"""

from __future__ import annotations

import importlib

#: Board name (as written in capture headers and accepted by ``--device``) -> module.
BOARD_MODULES = {
    "cyton": "ingest.boards.cyton",
    "cyton-daisy": "ingest.boards.cyton",
    "ganglion": "ingest.boards.ganglion",
    "muse-2": "ingest.boards.muse",
    "muse-s": "ingest.boards.muse",
    "muse": "ingest.boards.muse",
    "dreamsync": "ingest.boards.dreamsync",
}


def decoder_for(header: dict):
    """The decoder a capture with this header was recorded with.

    Raises
    ------
    KeyError
        For a board dreamsync has no driver for.
    """
    board = header.get("board", "")
    if board not in BOARD_MODULES:
        raise KeyError(f"no decoder for board {board!r}; known: {', '.join(sorted(BOARD_MODULES))}")
    return importlib.import_module(BOARD_MODULES[board]).decoder_from_header(header)

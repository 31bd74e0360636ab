"""JSON given as text or as the path of a file: one rule for every ``from_json`` (TrainConfig, History).

A string that starts with "{" (after white space) is JSON text; anything else (a string, a ``pathlib.Path``) is
the path of a file to read. Why this test: a config and a history are JSON objects, so their text starts with
"{", and a file name practically never does.
"""
from __future__ import annotations

import os


def json_text(text_or_path: str | os.PathLike) -> str:
    """The JSON text itself, or the text of the file it names."""
    if isinstance(text_or_path, str) and text_or_path.lstrip().startswith("{"):
        return text_or_path
    with open(text_or_path) as fh:
        return fh.read()

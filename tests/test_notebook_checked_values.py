"""Checked cells show what they measured beside their verdicts (issue 16 item 13).

A learner who reads only "✓" cannot tell what was checked; the committed outputs of notebook 04's rotation
section (the ones nbval compares) must hold the measured angles the verdicts are about.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NB04 = ROOT / "notebooks" / "04_sparseopt.ipynb"


def _output_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def test_rotation_section_prints_the_angles_it_checks():
    nb = nbformat.read(str(NB04), as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "code" and "rotation_angles" in c.source]
    assert len(cells) == 1, "one rotation cell in notebook 04"
    cell = cells[0]
    assert cell.source.lstrip().startswith("# NBVAL_CHECK_OUTPUT"), "the verdicts stay checked"
    text = _output_text(cell)
    assert "✓" in text and "✗" not in text, text
    sparsities = [float(v) for v in re.findall(r"\d\.\d\d", re.search(r"^sparsity.*$", text, re.M).group(0))]
    angles = [float(v) for v in re.findall(r"(\d+)°", re.search(r"^angle.*$", text, re.M).group(0))]
    assert sparsities[:4] == [0.5, 0.8, 0.9, 0.95] and len(angles) == len(sparsities), text
    # the printed values are the ones the verdicts speak of: growing to 0.95, all in (1°, 45°)
    assert angles[:4] == sorted(angles[:4]) and 1 <= min(angles) and max(angles) <= 45, text

"""The CLI run in-process for tests: (exit status, stdout, stderr); argparse's exits are statuses too."""
from __future__ import annotations

from sparseopt_edu.cli import main


def run(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err

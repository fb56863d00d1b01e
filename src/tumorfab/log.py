"""Send a workflow script's output and errors to its Snakemake log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import traceback
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def log_to(path: str) -> Iterator[None]:
    """Redirect stdout, stderr and ``logging`` to ``path`` for the block.

    An exception is written to the log with its traceback and re-raised, so
    that Snakemake marks the job failed and the log says why.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as handle:
        handler = logging.StreamHandler(handle)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(handle), contextlib.redirect_stderr(handle):
                yield
        except BaseException:
            traceback.print_exc(file=handle)
            # Also on the real stderr, so the Snakemake console shows the reason.
            traceback.print_exc(file=sys.__stderr__)
            raise
        finally:
            root.removeHandler(handler)

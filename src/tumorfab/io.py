"""Reading and writing volumes and tables, always through a temporary name.

Every output is written next to its final path under a hidden temporary name
and renamed into place, so that a killed job never leaves a file that looks
complete (rename is atomic on one file system).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The temporary name keeps the suffixes of ``path`` (``.nii.gz``, ``.csv``...)
    so that writers that infer the format from the name still work. On an
    exception the temporary file is removed and nothing appears at ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the file the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    tmp_path.chmod(0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path``.

    An existing ``path`` is replaced only once the new folder is complete; on
    an exception the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private (0700)
    try:
        yield tmp
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_nifti(path: str | os.PathLike) -> nib.Nifti1Image:
    """Load a NIfTI image, turning any reader failure into an error naming the file."""
    try:
        image = nib.load(str(path))
        # Touch the data: a truncated .nii.gz only fails when it is decompressed.
        image.get_fdata(dtype=np.float32)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise ValueError(f"{path}: cannot read NIfTI image ({error})") from error
    return image


def save_nifti(
    data: np.ndarray,
    affine: np.ndarray,
    path: str | os.PathLike,
    header: nib.Nifti1Header | None = None,
) -> None:
    """Write ``data`` as NIfTI at ``path`` atomically; dtype is kept as given."""
    image = nib.Nifti1Image(np.asarray(data), affine, header=header)
    image.set_data_dtype(np.asarray(data).dtype)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))


def save_csv(frame: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table as CSV atomically, without the index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_text(text: str, path: str | os.PathLike) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)

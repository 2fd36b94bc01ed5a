"""Parquet files checked before `datasets` reads them, so a bad one is named.

`datasets.load_dataset("parquet", ...)` meets a truncated file deep in its builder and reports
a long traceback that never names the file; reading each file's footer first (a few KB, no
data) names it.
"""

from __future__ import annotations

import os
from pathlib import Path


def check_parquet_files(folder: str | os.PathLike) -> int:
    """Raise a ValueError naming the first ``*.parquet`` file under ``folder`` whose footer
    cannot be read (a truncated or corrupt file); return how many files were checked.

    Example:
        >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     pq.write_table(pa.table({"x": [1, 2]}), f"{folder}/a.parquet")
        ...     check_parquet_files(folder)
        1
    """
    import pyarrow.parquet as pq

    files = sorted(Path(folder).rglob("*.parquet"))
    for path in files:
        try:
            pq.ParquetFile(path).close()
        except Exception as err:  # pyarrow raises ArrowInvalid, OSError, ... by cause
            raise ValueError(
                f"{path}: not a readable parquet file (truncated or corrupt: {err})"
            ) from None
    return len(files)

#!/usr/bin/env python
"""Write the surgsim digital phantom CT as a DICOM series.

Usage: python tools/make_phantom.py OUT_DIR [--variant default] [--spacing 1.4,1.4,2.0] [--seed 0]
(spacing in millimetres: column, row, slice).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from surgsim.cases.phantom import VARIANTS, write_phantom_series  # noqa: E402


def _spacing_mm(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(
            f"--spacing wants three positive millimetre values like 1.4,1.4,2.0, got {text!r}"
        )
    return values  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="folder to write CT000001.dcm ... into")
    parser.add_argument("--variant", default="default", choices=VARIANTS)
    parser.add_argument(
        "--spacing",
        type=_spacing_mm,
        default=(1.4, 1.4, 2.0),
        help="voxel size in mm: column,row,slice (default 1.4,1.4,2.0)",
    )
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    files = write_phantom_series(
        args.out_dir, args.variant, tuple(v / 1000.0 for v in args.spacing), seed=args.seed
    )
    size = sum(f.stat().st_size for f in files)
    print(
        f"wrote {len(files)} files ({size / 1e6:.1f} MB) to {args.out_dir} "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

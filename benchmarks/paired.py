#!/usr/bin/env python
"""Is one configuration's BSDS score really above another's? A paired bootstrap.

Reads the per-image records that ``benchmarks/bsds.py`` cached for two
configurations (two ``cache/<method>-<hash>`` folders, each with its
``config.json``), keeps the images and scales both have, and resamples the
images with replacement: each resample picks each side's ODS (best single
scale over the resample, as the benchmark does) and takes the difference
B - A.  Prints the observed ODS of both sides and the difference with its 95 %
bootstrap interval, for SC, PRI and VI (for VI lower is better)::

    python benchmarks/paired.py benchmarks/out/val/cache/levelset-XXXX benchmarks/out/val/cache/levelset-YYYY \\
        --output levelset+ms

An interval that contains 0 means the split cannot tell the two apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def load(cache: Path, output: str) -> dict[str, dict[str, dict]]:
    """``{image id: {scale: record}}`` of one output in one cache folder."""
    out: dict[str, dict[str, dict]] = {}
    for f in cache.glob("*/*.json"):
        rec = json.loads(f.read_text())
        if rec.get("method") == output:
            out.setdefault(rec["id"], {})[str(rec["scale"])] = rec
    if not out:
        raise SystemExit(f"no {output} records under {cache}")
    return out


def arrays(recs: dict, ids: list[str], scales: list[str]) -> dict[str, np.ndarray]:
    """Per image x scale arrays of the covering counts, PRI and VI."""
    get = lambda key: np.array([[float(recs[i][s][key]) for s in scales] for i in ids])  # noqa: E731
    return {k: get(k) for k in ("cntR", "sumR", "pri", "vi")}


def ods(a: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """ODS SC, PRI, VI of the images ``idx`` (rows may repeat)."""
    cnt, tot = a["cntR"][idx].sum(0), a["sumR"][idx].sum(0)
    sc = np.divide(cnt, tot, out=np.zeros_like(cnt), where=tot != 0)
    return np.array([sc.max(), a["pri"][idx].mean(0).max(), a["vi"][idx].mean(0).min()])


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path, help="cache folder of configuration A (the reference)")
    p.add_argument("b", type=Path, help="cache folder of configuration B")
    p.add_argument(
        "--output", default="levelset+ms", help="which output's records (levelset, levelset+cc, levelset+ms)"
    )
    p.add_argument("--resamples", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    ra, rb = load(args.a, args.output), load(args.b, args.output)
    ids = sorted(set(ra) & set(rb))
    scales_a = sorted(set.intersection(*(set(ra[i]) for i in ids)))
    scales_b = sorted(set.intersection(*(set(rb[i]) for i in ids)))
    if not ids or not scales_a or not scales_b:
        raise SystemExit("the two folders have no images (or no scales) in common")
    A, B = arrays(ra, ids, scales_a), arrays(rb, ids, scales_b)
    every = np.arange(len(ids))
    observed = ods(B, every) - ods(A, every)
    rng = np.random.default_rng(args.seed)
    diffs = np.array([ods(B, idx) - ods(A, idx) for idx in rng.integers(0, len(ids), (args.resamples, len(ids)))])
    lo, hi = np.percentile(diffs, [2.5, 97.5], axis=0)

    def name(p):
        config = p / "config.json"
        return json.loads(config.read_text())["config"].get("settings", {}) if config.is_file() else p.name

    print(
        f"{len(ids)} images; A = {name(args.a)} ({len(scales_a)} scales), "
        f"B = {name(args.b)} ({len(scales_b)} scales); {args.resamples} resamples"
    )
    print()
    print("| measure | A ODS | B ODS | B - A | 95 % interval |")
    print("|---|---|---|---|---|")
    result = {}
    for k, m in enumerate(("SC", "PRI", "VI")):
        print(
            f"| {m} | {ods(A, every)[k]:.3f} | {ods(B, every)[k]:.3f} | {observed[k]:+.3f} "
            f"| {lo[k]:+.3f} … {hi[k]:+.3f} |"
        )
        result[m] = dict(diff=float(observed[k]), lo=float(lo[k]), hi=float(hi[k]))
    return result


if __name__ == "__main__":
    main()

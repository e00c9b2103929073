#!/usr/bin/env python
"""Training from a few labelled nuclei images: supervised, semi-supervised, unsupervised, untrained.

For each ``k`` of ``--k`` and each set of the nuclei development data (``--data``, laid out as
its ``README.md`` says: GOWT1 and HeLa with instance masks, NIH3T3 with foreground masks), the
images in numeric order are split into

``labelled``
    the first ``min(k, n - 1)`` images; their masks are given to ``train`` as they are (instance
    masks for GOWT1 and HeLa, 0/255 foreground masks for NIH3T3), which turns them into class
    targets by its label rule (``napari_levelset.training.labels``: background 0 -> class 1,
    nucleus -> class 2) and reads from them whether objects cut by the image's edge are
    annotated (``napari_levelset.training.edges``);
``test``
    every other one of the rest, starting with the first (so each set has one);
``unlabelled``
    the others: images the semi-supervised and unsupervised runs see without masks.

The test images are never in training.  One model per method is trained on the three sets
together (``napari_levelset.training.train.train``, ``n_classes=2``, every other setting the
training defaults unless given with ``--set``); with ``--per-set``, one model per method and set,
trained on that set's images alone and scored on its test images (the minutes are then the
longest of the three trainings):

``supervised``  the labelled images with their targets;
``semi``        the labelled images with their targets plus the unlabelled images;
``unsupervised`` the labelled and the unlabelled images, no targets;
``untrained``   no training: ``segment(image, regions="instances")`` (the per-image CNN);
``pretrained``  no training: the shipped U-Net, ``segment(image, model="unet", regions="instances")``.

A trained model is scored through ``segment(image, model=FILE, regions="instances")``, which
prepares the image as the model file records its training images were prepared (its
``preparation``).  With ``--prepare instances`` (the default) ``train`` prepares them with the
instance path's fluorescence contrast (``train(contrast="fluorescence")``: the normalised
image with its background removed and log-compressed,
``napari_levelset.post.instances.fluorescence_prepared``), which the model records, so the
test images get it too; ``--prepare plain`` trains on the normalised images alone
(``contrast="linear"``), and the test images are then given that.

Scores (``napari_levelset.evaluation``): F1 at IoU 0.5, AP over IoU 0.5:0.05:0.95 and foreground
Dice for GOWT1 and HeLa, foreground Dice for NIH3T3, each the mean over the set's test images;
minutes of training (wall clock, this process).

Example::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/train_nuclei.py --data ../shared/data/nuclei --k 1 \\
        --methods untrained,supervised,semi --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from _common import NUCLEI_SETS, OUT, markdown, parse_set

from napari_levelset import evaluation as metrics

METHODS = ("supervised", "semi", "unsupervised", "untrained", "pretrained")
TRAINED = ("supervised", "semi", "unsupervised")


# ------------------------------------------------------------------ data
def split(n: int, k: int) -> tuple[list[int], list[int], list[int]]:
    """``(labelled, unlabelled, test)`` indices of a set of ``n`` images with ``k`` labelled."""
    k = max(0, min(k, n - 1))
    rest = list(range(k, n))
    return list(range(k)), rest[1::2], rest[0::2]


def load(root: Path, k: int) -> dict:
    """Per set: the images, truths and split for ``k`` labelled images."""
    out = {}
    for name, s in NUCLEI_SETS.items():
        items = s.items(root)
        lab, unl, test = split(len(items), k)
        out[name] = dict(
            set=s,
            ids=[i[0] for i in items],
            images=[s.read(i[1]) for i in items],
            truths=[s.read(i[2]) for i in items],
            labelled=lab,
            unlabelled=unl,
            test=test,
        )
    return out


def training_data(sets: dict, method: str) -> tuple[list, list | None]:
    """The images (and labels, or None) ``method`` trains on."""
    images, labels = [], []
    for d in sets.values():
        use = d["labelled"] + ([] if method == "supervised" else d["unlabelled"])
        for i in use:
            images.append(d["images"][i])
            labels.append(d["truths"][i] if method != "unsupervised" and i in d["labelled"] else None)
    return images, (labels if any(lab is not None for lab in labels) else None)


# ------------------------------------------------------------------ runs
def train_model(sets: dict, method: str, args, k: int, settings: dict, name: str = "") -> tuple[Path, float]:
    from napari_levelset.nn.model_files import read_model_file
    from napari_levelset.training.train import train

    images, labels = training_data(sets, method)
    tag = "-".join(f"{a}{b}" for a, b in sorted(settings.items())).replace("/", "_")
    out = (
        args.out / f"k{k}-{method}-{args.prepare}-s{args.seed}{'-' + tag if tag else ''}{'-' + name if name else ''}.pt"
    )
    reused = args.reuse and out.is_file()
    if not reused:
        t0 = time.perf_counter()
        train(
            images,
            out,
            n_classes=2,
            labels=labels,
            contrast="fluorescence" if args.prepare == "instances" else "linear",
            threads=args.threads,
            seed=args.seed,
            progress=False,
            resume=False,
            **settings,
        )
        minutes = (time.perf_counter() - t0) / 60
    meta = read_model_file(out)["metadata"]
    print(f"{out.name}: edge objects {meta.get('edge_objects')} {meta.get('edge_objects_evidence')}", file=sys.stderr)
    if reused:
        minutes = float(meta.get("train_seconds_last_call", float("nan"))) / 60
    return out, minutes


def score(sets: dict, model) -> dict:
    """Per set: mean scores of ``segment(image, regions="instances"[, model=model])`` over its test images."""
    from napari_levelset import segment

    kw = {} if model is None else dict(model=str(model))
    res = {}
    for name, d in sets.items():
        rows = []
        for i in d["test"]:
            labels = segment(d["images"][i], regions="instances", **kw)
            truth = d["truths"][i]
            share = (float(np.mean(labels > 0)), float(np.mean(truth > 0)))
            if d["set"].instances:
                s = metrics.instance_scores(labels, truth)
                rows.append((s["f1"], s["ap"], s["dice"], *share))
            else:
                rows.append((np.nan, np.nan, metrics.foreground_dice(labels > 0, truth > 0), *share))
        with warnings.catch_warnings():  # NIH3T3 has no F1 or AP
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.array(rows, float), 0) if rows else [np.nan] * 5
        res[name] = dict(zip(("f1", "ap", "dice", "fg_share", "true_fg_share"), map(float, mean)))
    return res


def cell(s: dict, instances: bool) -> str:
    if instances:
        return f"{s['f1']:.3f} / {s['ap']:.3f} / {s['dice']:.3f}"
    return f"{s['dice']:.3f}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the nuclei folder (README.md layout)")
    p.add_argument("--k", default="1", help="labelled images per set, comma-separated")
    p.add_argument("--methods", default="untrained,supervised,semi,unsupervised", help=", ".join(METHODS))
    p.add_argument("--prepare", choices=["instances", "plain"], default="instances")
    p.add_argument("--set", action="append", default=[], help="a training setting KEY=VALUE (repeatable)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=OUT / "train_nuclei")
    p.add_argument("--per-set", action="store_true", help="one model per set, trained on that set's images alone")
    p.add_argument("--reuse", action="store_true", help="score a model file of the same run instead of training")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown methods {bad}; choose from {METHODS}")
    settings = parse_set(args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    for k in [int(v) for v in args.k.split(",")]:
        sets = load(args.data, k)
        for name, d in sets.items():
            print(
                f"k={k} {name}: labelled {[d['ids'][i] for i in d['labelled']]}, unlabelled "
                f"{[d['ids'][i] for i in d['unlabelled']]}, test {[d['ids'][i] for i in d['test']]}",
                file=sys.stderr,
            )
        for method in methods:
            minutes, model, res = 0.0, None, {}
            if method in TRAINED and args.per_set:
                for name in sets:
                    model, m = train_model({name: sets[name]}, method, args, k, settings, name)
                    minutes = max(minutes, m)
                    res.update(score({name: sets[name]}, model))
            else:
                if method in TRAINED:
                    model, minutes = train_model(sets, method, args, k, settings)
                elif method == "pretrained":
                    model = "unet"
                res = score(sets, model)
            results.append(
                dict(k=k, method=method, minutes=minutes, scores=res, settings=settings, per_set=args.per_set)
            )
            print(json.dumps(results[-1], default=str), file=sys.stderr, flush=True)
    head = ["k", "method", *[f"{n} ({'F1 / AP / Dice' if s.instances else 'Dice'})" for n, s in NUCLEI_SETS.items()]]
    rows = [
        [str(r["k"]), r["method"]]
        + [cell(r["scores"][n], s.instances) for n, s in NUCLEI_SETS.items()]
        + [f"{r['minutes']:.1f}" if r["method"] in TRAINED else "-"]
        for r in results
    ]
    print("\n".join(markdown(head + ["training (min)"], rows)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

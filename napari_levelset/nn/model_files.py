"""Model files of the U-Net: reading, writing and checking ``.pt`` files, the shipped weights.

``save_model`` writes a ``torch.save`` dict of plain types and tensors only:
``format``, ``format_version``, ``metadata`` (a JSON string: architecture and
hyper-parameters, heads, normalisation, package version, training settings)
and ``state_dict``.  ``load_model`` reads it back with
``torch.load(weights_only=True)``, so no arbitrary code can run; anything else
(a missing, corrupt or foreign file, a mismatching state dict) raises
``napari_levelset.errors.InputError`` with a one-line message.  Every architecture
value the metadata declares is bounded (``ARCH_LIMITS``, ``HEAD_CLASSES``), and
the declared network is built on torch's meta device and compared with the
stored weights (names and shapes) before any memory is allocated for it.  A file is
first read without its weights (the zip archive's directory, then the pickle with
every tensor on the meta device): its records may not declare more bytes than the
network it describes can hold (``MAX_STATE_COPIES``), nor its metadata nest deeper
than ``MAX_METADATA_DEPTH``, so what it costs to read is bounded by what it honestly
claims, not by what its compressed records inflate to.  Training
checkpoints use the same format plus the optimiser state, so they load too.  A file
unchanged since it was last read is not read again (``files_read`` counts the reads).

The shipped models live in the package's ``weights`` folder (``pretrained_path``).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from napari_levelset import __version__
from napari_levelset.errors import InputError
from napari_levelset.io.write import atomic_write
from napari_levelset.nn.unet import LevelSetUNet

__all__ = [
    "ARCH_LIMITS",
    "FORMAT",
    "FORMAT_VERSION",
    "HEAD_CLASSES",
    "count_ranges",
    "files_read",
    "load_model",
    "model_color",
    "model_preparation",
    "portable_metadata",
    "pretrained_path",
    "read_model_file",
    "resolve_model_path",
    "save_model",
    "training_preparation",
]

FORMAT = "napari-levelset-unet"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Shipped pretrained models, by name.
PRETRAINED = {"unet": "unet_bsds.pt"}
#: Normalisation the models are trained with and given (``napari_levelset.io.prepare.normalize`` with
#: ``structures=False``: the percentile rule the shipped model learned; with the brightest-structure
#: rule of the per-image CNN it scores lower on BSDS500 val, SC 0.574 -> 0.561 at N 32, merged).
#: Written into every model file's metadata as it is (a description for people; nothing reads it back).
NORMALISATION = (
    "per-channel linear map of the 0.5th..99.5th percentiles to [0, 1], clipped (napari_levelset.io.prepare.normalize)"
)
#: ``structures`` argument of ``prepare_image`` for U-Nets (see ``NORMALISATION``)
STRUCTURES = False
NORMALISATION_LAB = (
    "CIELAB scaled by 1/100 (napari_levelset.io.prepare.to_lab); a grey image goes in as lightness, "
    "normalised as for rgb, with a = b = 0"
)


def count_ranges(ns: list[int]) -> str:
    """Class counts for a message: ``"2..16"`` for a run of more than two, else listed.

    Parameters
    ----------
    ns : list of int
        Sorted class counts (e.g. a model's ``head_counts``).

    Returns
    -------
    str
        ``"first..last"`` when ``ns`` are more than two consecutive counts, else
        ``"a, b, ..."``.

    Examples
    --------
    >>> count_ranges([2, 3, 4, 5]), count_ranges([2, 4])
    ('2..5', '2, 4')
    """
    if ns and ns == list(range(ns[0], ns[-1] + 1)) and len(ns) > 2:
        return f"{ns[0]}..{ns[-1]}"
    return ", ".join(str(n) for n in ns)


def pretrained_path(name: str = "unet") -> Path:
    """Where the shipped model ``name`` lives (in the package's ``weights`` folder).

    Parameters
    ----------
    name : str
        A key of ``PRETRAINED`` (``"unet"``).

    Returns
    -------
    pathlib.Path
        The file (it may be missing from an installation without weights).

    Raises
    ------
    KeyError
        When ``name`` is not a shipped model.

    Examples
    --------
    >>> pretrained_path().name
    'unet_bsds.pt'
    """
    return WEIGHTS_DIR / PRETRAINED[name]


def resolve_model_path(model: str | os.PathLike) -> Path:
    """The file of ``model``: a shipped model's name or the path of a model file, checked to exist.

    Parameters
    ----------
    model : str or os.PathLike
        A key of ``PRETRAINED`` (``"unet"``) or the path of a model file.

    Returns
    -------
    pathlib.Path
        The file (not yet read).

    Raises
    ------
    InputError
        When the shipped model is not installed, the file does not exist, or it is a directory.
    """
    if isinstance(model, str) and model in PRETRAINED:
        p = pretrained_path(model)
        if not p.is_file():
            raise InputError(f"the pretrained model {model!r} is not installed (expected {p})")
        return p
    p = Path(model)
    if not p.exists():
        raise InputError(f"no such model file: {p} (use 'cnn', 'unet' or the path of a model file)")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not a model file")
    return p


def save_model(path: str | os.PathLike, net: nn.Module, metadata: dict | None = None, **extra: Any) -> Path:
    """Write ``net`` (a ``LevelSetUNet`` or ``PretrainedNetwork``) with its metadata, atomically.

    ``metadata`` (JSON-serialisable) is merged over the architecture, head and
    normalisation description and the package version; a ``PretrainedNetwork``
    (e.g. after a fine-tune) also keeps the metadata of the file it came from,
    its colour handling included.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (``atomic_write``: a failure leaves the old file as it was).
    net : torch.nn.Module
        A ``LevelSetUNet``, or a ``PretrainedNetwork`` (saved as a one-head ``LevelSetUNet``).
    metadata : dict or None
        JSON-serialisable; merged over the architecture, head and normalisation description
        and the package version.
    **extra
        Entries stored beside (plain types and tensors, e.g. an optimiser state).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        For a ``PretrainedNetwork`` with position channels or with a new, untrained head,
        metadata that is not JSON-serialisable, or a folder that does not exist.
    TypeError
        When ``net`` is neither a ``LevelSetUNet`` nor a ``PretrainedNetwork``.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "tiny.pt")
    >>> _ = save_model(out, LevelSetUNet(1, [2], base=4, levels=1, embed=4), {"note": "tiny"})
    >>> load_model(out)[1]["note"]
    'tiny'
    """
    if getattr(net, "pretrained", False) is True:  # a PretrainedNetwork (napari_levelset.nn.pretrained)
        if net.extra_channels:
            raise InputError(
                "a network with position channels cannot be saved: the model format has no "
                "place for head-only inputs (segment with position=0 to get one that can)"
            )
        if not net.head_trained:
            raise InputError(
                f"the head for {net.n_classes} classes is new and untrained: start it from an "
                "image's k-means (init='kmeans') and fine-tune it before saving"
            )
        inherited = {
            k: v
            for k, v in (getattr(net, "metadata", None) or {}).items()
            if k not in ("architecture", "normalisation", "package_version")
        }
        metadata = {**inherited, "color": net.model_color, **(metadata or {})}
        unet = LevelSetUNet(net.model_channels, [net.n_classes], **_body_kwargs(net.body.config))
        unet.body = net.body
        unet.heads[str(net.n_classes)] = net.head
        net = unet
    if not isinstance(net, LevelSetUNet):
        raise TypeError(f"save_model needs a LevelSetUNet or PretrainedNetwork, got {type(net).__name__}")
    lab = (metadata or {}).get("color") == "lab"
    meta = dict(
        architecture=net.config, normalisation=NORMALISATION_LAB if lab else NORMALISATION, package_version=__version__
    )
    meta.update(metadata or {})
    meta = portable_metadata(meta)
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise InputError(f"model metadata must be JSON-serialisable: {exc}") from None
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    blob = dict(format=FORMAT, format_version=FORMAT_VERSION, metadata=meta_json, state_dict=state, **extra)
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


#: an absolute path (POSIX or Windows) inside a string: its folders are dropped, its last part kept
_ABSOLUTE = re.compile(r"""(?<![\w.~-])(?:[A-Za-z]:)?[/\\](?:[^\s/\\'"]+[/\\])+([^\s/\\'"]*)""")


def portable_metadata(value: Any) -> Any:
    """``value`` with every absolute path in its strings cut to its last part (no folders of the machine).

    Parameters
    ----------
    value : Any
        JSON-like metadata (dicts, lists, strings, numbers).

    Returns
    -------
    Any
        The same structure; ``"/data/bsds/train (200 files)"`` becomes ``"train (200 files)"``.

    Examples
    --------
    >>> portable_metadata({"data": "/work/data/train (2 files)", "cmd": "train /tmp/a/b.pt -o m.pt"})
    {'data': 'train (2 files)', 'cmd': 'train b.pt -o m.pt'}
    """
    if isinstance(value, str):
        return _ABSOLUTE.sub(lambda m: m.group(1), value)
    if isinstance(value, dict):
        return {k: portable_metadata(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_metadata(v) for v in value]
    return value


def training_preparation(color: str, repeated: bool = False, contrast: str = "linear") -> dict:
    """How training prepares its images, as a model file records it (``preparation``).

    Parameters
    ----------
    color : str
        ``rgb`` or ``lab``.
    repeated : bool
        Whether grey images were repeated to the model's channels.
    contrast : str
        ``linear`` or ``fluorescence`` (``napari_levelset.post.instances.fluorescence_prepared``).

    Returns
    -------
    dict
        ``color``, ``contrast`` (``"linear"``: no background removal nor log compression;
        ``"fluorescence"``: both),
        ``normalisation`` (in words) and ``grey``.
    """
    return dict(
        color=color,
        contrast=contrast,
        normalisation=NORMALISATION_LAB if color == "lab" else NORMALISATION,
        grey="repeated to every channel" if repeated else "as given",
    )


def model_preparation(model: str | os.PathLike = "unet") -> dict | None:
    """How the images a model file was trained on were prepared (its ``preparation``), or None.

    Parameters
    ----------
    model : str or os.PathLike
        ``"unet"`` (the shipped model) or the path of a model file.

    Returns
    -------
    dict or None
        ``color``, ``contrast``, ``normalisation``, ``grey`` (``training_preparation``); None for a
        file that does not record them (the shipped model, files of earlier versions).

    Raises
    ------
    InputError
        When the model is not installed, the file is missing, or it is not a valid model file.
    """
    prep = load_model(resolve_model_path(model))[1].get("preparation")
    return prep if isinstance(prep, dict) else None


def _body_kwargs(arch: dict) -> dict:
    return {k: arch[k] for k in ("base", "levels", "embed", "ndim", "convs")}


def read_model_file(path: str | os.PathLike) -> dict:
    """The raw dict of a model or checkpoint file, checked (``InputError`` otherwise).

    Parameters
    ----------
    path : str or os.PathLike
        The file, read with ``torch.load(weights_only=True)`` on the CPU.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``metadata`` (parsed from its JSON string into a
        dict), ``state_dict`` and any extra entries (a checkpoint's optimiser state).

    Raises
    ------
    InputError
        When the file is missing or unreadable, not of this ``FORMAT``, of a newer
        ``FORMAT_VERSION``, or lacks readable metadata or weights; when its metadata nests
        deeper than ``MAX_METADATA_DEPTH``, its architecture is out of bounds, or its
        records declare more bytes than that architecture holds (checked before any
        weight is read).
    """
    p = Path(path)
    records = _records(p)
    blob = _load(p, "meta")  # the pickle only: every tensor on the meta device, no weight read
    _check_blob(blob, p)
    _check_record_sizes(records, blob, p)
    blob = _load(p, "cpu")
    _check_blob(blob, p)
    return blob


#: Bytes a model file's pickle and other small records may declare (the shipped model's pickle: 11 kB).
MAX_PICKLE_BYTES = 16 << 20
#: Most records a model file may hold (one per tensor; the shipped model: 100).
MAX_RECORDS = 1 << 16
#: Copies of the weights a file may hold: the weights and an optimiser's state (Adam's two moments,
#: AMSGrad's maximum); every element counted at 8 bytes.
MAX_STATE_COPIES = 4
#: Deepest nesting of lists and records the metadata (and the file's other entries) may have.
MAX_METADATA_DEPTH = 64


def _records(p: Path) -> list[zipfile.ZipInfo]:
    """The archive's records, from its directory alone; one line if it is no zip or a small record is large."""
    try:
        with zipfile.ZipFile(p) as zf:
            records = zf.infolist()
    except FileNotFoundError:
        raise InputError(f"no such model file: {p}") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else exc.__class__.__name__
        raise InputError(f"cannot read model file {p}: not a napari-levelset model ({msg})") from None
    if len(records) > MAX_RECORDS:
        raise InputError(f"model file {p} holds {len(records)} records; a model file holds at most {MAX_RECORDS}")
    for r in records:
        # torch.save stores weights uncompressed, so a record's size is bounded by the file's own size;
        # a compressed weight record could inflate far beyond it
        if _is_weight_record(r.filename) and r.compress_type != zipfile.ZIP_STORED:
            raise InputError(
                f"model file {p} holds a compressed weight record {r.filename.rsplit('/', 1)[-1]!r:.40}; "
                "model files store their weights uncompressed (as torch.save writes them)"
            )
        if not _is_weight_record(r.filename) and r.file_size > MAX_PICKLE_BYTES:
            raise InputError(
                f"model file {p} declares a record {r.filename.rsplit('/', 1)[-1]!r:.40} of "
                f"{r.file_size} bytes; a model file's pickle holds at most {MAX_PICKLE_BYTES}"
            )
    return records


def _is_weight_record(name: str) -> bool:
    return "/data/" in name or name.startswith("data/")


def _load(p: Path, device: str) -> Any:
    """``torch.load(weights_only=True)`` onto ``device`` (``"meta"``: the pickle alone), errors in one line."""
    try:
        return torch.load(p, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"no such model file: {p}") from None
    except Exception as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours some messages for terminals
        msg = text.splitlines()[0][:160] if text else exc.__class__.__name__
        raise InputError(f"cannot read model file {p}: not a napari-levelset model ({msg})") from None


def _nesting_depth(value: Any, limit: int) -> int:
    """How deep lists, tuples and dicts nest in ``value`` (iteratively), stopping past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, (list, tuple)):
            children = v
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((c, depth + 1) for c in children)
    return deepest


def _json_depth(text: str) -> int:
    """How deep ``[`` and ``{`` nest in the JSON ``text`` (brackets inside strings left out)."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", text)
    codes = np.frombuffer(bare.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _check_blob(blob: Any, p: Path) -> None:
    """The loaded dict checked, its metadata parsed in place (one line for anything wrong)."""
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{p} is not a napari-levelset U-Net model file")
    version = blob.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(
            f"{p} has model format version {version!r}; this napari-levelset reads up to {FORMAT_VERSION}: update it"
        )
    if not isinstance(blob.get("metadata"), str) or not isinstance(blob.get("state_dict"), dict):
        raise InputError(f"model file {p} is incomplete (no metadata or weights)")
    depth = max(_json_depth(blob["metadata"]), _nesting_depth(blob, MAX_METADATA_DEPTH))
    if depth > MAX_METADATA_DEPTH:
        raise InputError(
            f"model file {p} has metadata nested {depth} levels deep; a model file's metadata "
            f"nests at most {MAX_METADATA_DEPTH}"
        )
    try:
        blob["metadata"] = json.loads(blob["metadata"])
    except (ValueError, RecursionError):
        raise InputError(f"model file {p} has unreadable metadata") from None
    if not isinstance(blob["metadata"], dict):
        raise InputError(f"model file {p} has unreadable metadata (not a record of named fields)")


def _check_record_sizes(records: list[zipfile.ZipInfo], blob: dict, p: Path) -> None:
    """The weight records' declared sizes against what the declared architecture holds, before reading them."""
    in_channels, heads, body = _check_architecture(blob["metadata"].get("architecture"), p)
    with torch.device("meta"):
        skeleton = LevelSetUNet(in_channels, heads, **body)
    elements = sum(t.numel() for t in skeleton.state_dict().values())
    bound = MAX_STATE_COPIES * 8 * elements + 8 * len(records)  # + a scalar per record (optimiser steps)
    declared = sum(r.file_size for r in records if _is_weight_record(r.filename))
    if declared > bound:
        raise InputError(
            f"model file {p} declares {declared} bytes of weights; the architecture it describes holds at most {bound}"
        )


_FILE_CACHE: dict = {}
_FILES_READ = [0]


def files_read() -> int:
    """How many model files this process has read from disk.

    ``load_model`` reads a file once while it is unchanged: batches and dask workers read
    a model once, not once per image.

    Returns
    -------
    int
        The count since the process started.
    """
    return _FILES_READ[0]


def _read_cached(p: Path) -> dict:
    """``read_model_file`` remembered by (path, size, mtime): the widget, batches and benchmarks build
    many networks."""
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return read_model_file(p)
    if key not in _FILE_CACHE:
        blob = read_model_file(p)
        _FILES_READ[0] += 1
        _FILE_CACHE.clear()  # keep one file only
        kept = ("format", "format_version", "metadata", "state_dict")
        _FILE_CACHE[key] = {k: v for k, v in blob.items() if k in kept}
    blob = _FILE_CACHE[key]
    return dict(blob, metadata=json.loads(json.dumps(blob["metadata"])))


#: Bounds on the architecture a model file may declare (inclusive): what ``train`` can make
#: (``--base``/``--embed`` up to 1024, ``--levels`` up to 8, class counts 2..255), with room for
#: multi-channel images.  The shipped model: in_channels 3, base 16, levels 3, embed 32, convs 2.
ARCH_LIMITS: dict[str, tuple[int, int]] = dict(
    in_channels=(1, 64), base=(1, 1024), levels=(0, 8), embed=(1, 1024), convs=(1, 8), ndim=(2, 3)
)
#: Class counts a head may have, and so the most heads a model may declare (one per count).
HEAD_CLASSES = (2, 255)
MAX_HEADS = HEAD_CLASSES[1] - HEAD_CLASSES[0] + 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_architecture(arch: Any, p: Path) -> tuple[int, list[int], dict]:
    """``(in_channels, heads, body kwargs)`` of a model file's declared architecture, every value bounded."""
    if not isinstance(arch, dict) or arch.get("arch") != "unet":
        raise InputError(f"model file {p} describes an architecture this version cannot build (unknown architecture)")
    values = {}
    for key, (lo, hi) in ARCH_LIMITS.items():
        if key not in arch:
            raise InputError(f"model file {p} describes an architecture this version cannot build (no {key!r})")
        v = arch[key]
        if not _is_int(v) or not lo <= v <= hi:
            raise InputError(f"model file {p} declares {key} {repr(v)[:40]}; this version builds {key} {lo}..{hi}")
        values[key] = v
    heads = arch.get("heads")
    lo, hi = HEAD_CLASSES
    if not isinstance(heads, list) or not 1 <= len(heads) <= MAX_HEADS:
        n = len(heads) if isinstance(heads, list) else type(heads).__name__
        raise InputError(
            f"model file {p} declares heads {str(n)[:40]}; this version builds 1..{MAX_HEADS} heads "
            f"(class counts {lo}..{hi})"
        )
    for n in heads:
        if not _is_int(n) or not lo <= n <= hi:
            raise InputError(f"model file {p} declares a head for {repr(n)[:40]} classes; heads have {lo}..{hi}")
    if len(set(heads)) != len(heads):
        raise InputError(f"model file {p} declares a head twice (heads {count_ranges(sorted(heads))[:80]})")
    in_channels = values.pop("in_channels")
    return in_channels, sorted(heads), values


def _check_weights(state: dict, skeleton: nn.Module, p: Path) -> None:
    """The stored weights against the declared network (built on the meta device: no memory), one line if not."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise InputError(f"model file {p} does not match its architecture: a weight is named {bad_keys[0]!r:.40}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {len(missing)} weights (e.g. {missing[0]})"] if missing else []) + (
            [f"{len(unexpected)} unexpected weights (e.g. {unexpected[0][:60]})"] if unexpected else []
        )
        raise InputError(f"model file {p} does not match its architecture: " + ", ".join(parts))
    for k, shape in expected.items():
        t = state[k]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise InputError(f"model file {p} does not match its architecture: {k} is not a floating-point tensor")
        if tuple(t.shape) != shape:
            raise InputError(
                f"model file {p} does not match its architecture: {k} has shape {tuple(t.shape)}, "
                f"the architecture needs {shape}"
            )


def load_model(path: str | os.PathLike) -> tuple[LevelSetUNet, dict]:
    """Load a model file written by ``save_model`` (or a training checkpoint).

    Every architecture value is bounded (``ARCH_LIMITS``, ``HEAD_CLASSES``) and the
    declared network is first built on torch's meta device and compared, name by name
    and shape by shape, with the stored weights: memory is only allocated for a network
    the file holds.  A file unchanged since it was last read is not read again.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    net : LevelSetUNet
        In eval mode, on the CPU.
    metadata : dict
        The file's metadata (``architecture``, ``normalisation``, ``package_version``,
        ``color``, training settings, ...).

    Raises
    ------
    InputError
        For anything that is not a valid napari-levelset U-Net file: missing, unreadable,
        foreign, out-of-bounds architecture, weights that do not match it, or NaN or
        infinite weights.

    Examples
    --------
    >>> net, meta = load_model(pretrained_path("unet"))
    >>> net.head_counts[0], net.head_counts[-1], meta["architecture"]["levels"]
    (2, 16, 3)
    """
    p = Path(path)
    blob = _read_cached(p)
    meta = blob["metadata"]
    in_channels, heads, body = _check_architecture(meta.get("architecture"), p)
    with torch.device("meta"):
        skeleton = LevelSetUNet(in_channels, heads, **body)
    _check_weights(blob["state_dict"], skeleton, p)
    del skeleton
    net = LevelSetUNet(in_channels, heads, **body)
    try:
        net.load_state_dict(blob["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(s.strip() for s in first[:2])[:200]
        raise InputError(f"model file {p} does not match its architecture: {detail}") from None
    for t in net.state_dict().values():
        if not torch.isfinite(t).all():
            raise InputError(f"model file {p} contains NaN or infinite weights")
    net.eval()
    return net, meta


def model_color(model: str | os.PathLike = "unet") -> str:
    """The image preparation (``rgb`` or ``lab``) a model file was trained with.

    Parameters
    ----------
    model : str or os.PathLike
        ``"unet"`` (the shipped model) or the path of a model file.

    Returns
    -------
    str
        The ``color`` of its metadata, ``"rgb"`` when it names none.

    Raises
    ------
    InputError
        When the model is not installed, the file is missing, or it is not a valid model file.
    """
    return load_model(resolve_model_path(model))[1].get("color", "rgb")

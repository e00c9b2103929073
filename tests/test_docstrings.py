"""Public docstrings are numpydoc: a summary, Parameters matching the signature, Returns, Raises.

Append a module to ``MODULES`` once its public docstrings are in numpydoc form.  What is
checked, for every public name of the module (its ``__all__``, or else the public functions and
classes defined in it) and every public method a public class defines itself:

- the docstring parses as numpydoc with no unknown or repeated section, and has a summary line;
- its Parameters section names exactly the parameters of the signature (``self``/``cls`` left
  out; ``*args``/``**kwargs`` written with their stars), each with a type and a description;
  a class documents its constructor's parameters (none needed where it inherits one from
  outside the package, e.g. an exception's);
- a function has a Returns (or Yields) section unless it is annotated ``-> None``;
- every exception the function raises itself (``raise Name(...)``) is named under Raises;
- a property has a docstring with a summary.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap
import warnings

import pytest

numpydoc_docscrape = pytest.importorskip("numpydoc.docscrape")

MODULES = [
    "napari_levelset.io.axes",
    "napari_levelset.io.read",
    "napari_levelset.io.prepare",
    "napari_levelset.io.write",
    "napari_levelset.io.zarr",
    "napari_levelset.evaluation.bsds",
    "napari_levelset.evaluation.contingency",
    "napari_levelset.evaluation.matching",
    "napari_levelset.nn.tiling",
    "napari_levelset.post.regions",
    "napari_levelset.post.diameter",
    "napari_levelset.post.instances",
    "napari_levelset.post.objects",
    "napari_levelset.nn.unet",
    "napari_levelset.nn.pretrained",
    "napari_levelset.nn.model_files",
    "napari_levelset.method.loss",
    "napari_levelset.method.cluster",
    "napari_levelset.nn.models",
    "napari_levelset.evaluation.synthetic",
    "napari_levelset.scale.batch",
    "napari_levelset.scale.chunked",
    "napari_levelset.training.train",
    "napari_levelset.training.checkpoints",
    "napari_levelset.resources",
    "napari_levelset.napari._writer",
    "napari_levelset.napari._sample_data",
    "napari_levelset.method.segmenter",
    "napari_levelset.method.restore",
    "napari_levelset.method.segmentation",
    "napari_levelset.method.start",
    "napari_levelset.method.memory",
    "napari_levelset.method.results",
    "napari_levelset.settings",
    "napari_levelset.validate",
    "napari_levelset.errors",
    "napari_levelset.cli.main",
    "napari_levelset.cli._args",
    "napari_levelset.cli._report",
    "napari_levelset.cli.segment",
    "napari_levelset.cli.train",
    "napari_levelset.spec",
    "napari_levelset.napari._worker",
    "napari_levelset.napari._session",
    "napari_levelset.napari._qt",
    "napari_levelset.napari._reader",
    "napari_levelset.method.plan",
    "napari_levelset.training.outputs",
    "napari_levelset.training.data",
    "napari_levelset.scale.statistics",
    "napari_levelset.napari._layers",
    "napari_levelset.method.strokes",
    "napari_levelset.method.stroke_look",
    "napari_levelset.training.labels",
    "napari_levelset.training.start",
    "napari_levelset.napari._training",
]
#: modules that import napari (an optional dependency): checked where it is installed
NEEDS_NAPARI = {
    "napari_levelset.napari._layers",
    "napari_levelset.napari._session",
    "napari_levelset.napari._qt",
    "napari_levelset.napari._reader",
    "napari_levelset.napari._training",
}


def _public_names(module) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [
            n
            for n, obj in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(obj) or inspect.isclass(obj))
            and obj.__module__ == module.__name__
        ]
    return sorted(names)


def _targets(module_name: str):
    """``(qualified name, object, kind)`` for each public callable of the module, and their public methods."""
    module = importlib.import_module(module_name)
    out = []
    for name in _public_names(module):
        obj = getattr(module, name)
        if inspect.isclass(obj):
            out.append((f"{module_name}.{name}", obj, "class"))
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                qual = f"{module_name}.{name}.{attr}"
                if isinstance(member, property):
                    out.append((qual, member.fget, "property"))
                elif isinstance(member, (staticmethod, classmethod)):
                    out.append((qual, member.__func__, "method"))
                elif inspect.isfunction(member):
                    out.append((qual, member, "method"))
        elif inspect.isfunction(obj):
            out.append((f"{module_name}.{name}", obj, "function"))
    return out


def _parse(doc: str):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown section name is a typo, not a new section
        return numpydoc_docscrape.NumpyDocString(doc)


def _signature_names(func, skip_first: bool) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    if skip_first and params and params[0].name in ("self", "cls"):
        params = params[1:]
    names = []
    for p in params:
        if p.kind is p.VAR_POSITIONAL:
            names.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            names.append("**" + p.name)
        else:
            names.append(p.name)
    return names


def _documented_names(parsed) -> list[str]:
    names = []
    for p in parsed["Parameters"]:
        names.extend(n.strip() for n in p.name.split(","))
    return names


def _init_of(cls):
    """The constructor whose parameters the class documents, or None when it inherits one from outside
    the package (a builtin's, ``torch.nn.Module``'s)."""
    package = cls.__module__.split(".")[0]
    for klass in cls.__mro__:
        init = vars(klass).get("__init__")
        if init is not None:
            own = inspect.isfunction(init) and klass.__module__.split(".")[0] == package
            return init if own else None
    return None  # pragma: no cover


def _own_raises(func) -> set[str]:
    """Exception classes that the function's own body raises by name (``raise Name(`` or ``raise Name``)."""
    try:
        src = textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):  # pragma: no cover
        return set()
    found = set(re.findall(r"\braise\s+([A-Z]\w*)", src))
    return {n for n in found if n.endswith(("Error", "Exception", "Interrupt", "Exit"))}


def _problems(qual: str, obj, kind: str) -> list[str]:
    doc = inspect.getdoc(obj) if kind != "class" else obj.__doc__
    if not doc or not doc.strip():
        return [f"{qual}: no docstring"]
    doc = inspect.cleandoc(doc)
    try:
        parsed = _parse(doc)
    except Exception as exc:  # numpydoc raises ValueError / warns UserWarning on a malformed docstring
        return [f"{qual}: not numpydoc ({exc})"]
    problems = []
    if not parsed["Summary"] or not "".join(parsed["Summary"]).strip():
        problems.append(f"{qual}: no summary line")
    if kind == "property":
        return problems

    if kind == "class":
        func = _init_of(obj)
        expected = _signature_names(func, skip_first=True) if func is not None else None
    else:
        func = obj
        expected = _signature_names(func, skip_first=kind == "method")

    if expected is not None:
        documented = _documented_names(parsed)
        if documented != expected:
            problems.append(f"{qual}: Parameters {documented} do not match the signature {expected}")
        for p in parsed["Parameters"]:
            if not p.name.startswith("*") and not p.type.strip():
                problems.append(f"{qual}: parameter {p.name!r} has no type")
            if not " ".join(p.desc).strip():
                problems.append(f"{qual}: parameter {p.name!r} has no description")

    if kind in ("function", "method"):
        ret = inspect.signature(func).return_annotation
        returns_none = ret in (None, "None", type(None))
        if not returns_none and not parsed["Returns"] and not parsed["Yields"]:
            problems.append(f"{qual}: no Returns (or Yields) section")
        named = " ".join(f"{p.name} {p.type}" for p in parsed["Raises"])
        for exc in sorted(_own_raises(func)):
            if not re.search(rf"\b{exc}\b", named):
                problems.append(f"{qual}: raises {exc}, which its Raises section does not name")
    return problems


@pytest.mark.parametrize("module_name", MODULES)
def test_public_docstrings_are_numpydoc(module_name):
    if module_name in NEEDS_NAPARI:
        pytest.importorskip("napari")
    targets = _targets(module_name)
    assert targets, f"{module_name} has no public callables to check"
    problems = [p for qual, obj, kind in targets for p in _problems(qual, obj, kind)]
    assert not problems, "\n".join(problems)


def test_the_check_finds_a_bad_docstring():
    def good(a: int, *rest, b: float = 1.0, **kw) -> int:
        """Add.

        Parameters
        ----------
        a : int
            First.
        *rest
            More.
        b : float
            Second.
        **kw
            Ignored.

        Returns
        -------
        int
            The sum.

        Raises
        ------
        ValueError
            When ``a`` is negative.
        """
        if a < 0:
            raise ValueError(a)
        return a

    def bad(a: int, c: int) -> int:
        """Add.

        Parameters
        ----------
        a : int
            First.
        b : int
            Misnamed.
        """
        if a < 0:
            raise ValueError(a)
        return a

    def no_type(a) -> None:
        """Do.

        Paramters
        ---------
        a
            First.
        """

    assert _problems("good", good, "function") == []
    found = _problems("bad", bad, "function")
    assert any("do not match the signature" in p for p in found)
    assert any("no Returns" in p for p in found)
    assert any("raises ValueError" in p for p in found)
    assert any("not numpydoc" in p for p in _problems("no_type", no_type, "function"))
    assert _problems("none", lambda: None, "function") == ["none: no docstring"]

"""The typed public API: precise signatures, checked by the pinned mypy on user code.

Two kinds of check: every public function, method and property is fully annotated and names
no ``Any`` (introspection, fast); and mypy, run on small user scripts, infers the types the
API promises (``assert_type``: a numpy input gives an ndarray, a tensor a Tensor, an image
batch stays an image batch) and flags misuse.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path

import pytest

import raggedarray as ra
import raggedarray.data
import raggedarray.nn
import raggedarray.testing

ROOT = Path(__file__).resolve().parents[1]

# Public signatures that keep an ``Any`` on purpose: what torch's ``default_collate`` makes of
# the non-ragged fields of a sample (torch types it ``Any``), and a dataset item, which a
# user ``transform`` may turn into anything.
ALLOWED_ANY = {"ra.collate", "ra.data.collate", "ra.data.RaggedDataset.__getitem__"}
# Protocol methods whose signatures Python or torch fix.
PROTOCOL = {
    "__torch_function__",
    "__array_ufunc__",
    "__array_function__",
    "__reduce__",
    "__reduce_ex__",
    "__deepcopy__",
    "__copy__",
}
PROTOCOL |= {"__getstate__", "__setstate__"}


def _own(obj: object) -> bool:
    return str(getattr(obj, "__module__", "")).startswith("raggedarray")


def _public_callables() -> dict[str, object]:
    """Public functions, methods and property getters, by their public name."""
    modules = {"ra": ra, "ra.nn": ra.nn, "ra.data": ra.data, "ra.testing": ra.testing}
    found: dict[str, object] = {}
    for prefix, module in modules.items():
        names = getattr(module, "__all__", None)
        if names is None:  # the module's own public names, not what it imports
            names = [
                n
                for n, o in vars(module).items()
                if n[0] != "_" and getattr(o, "__module__", "") == module.__name__
            ]
        for name in names:
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not _own(obj):
                continue
            if not inspect.isclass(obj):
                found[f"{prefix}.{name}"] = obj
                continue
            for attr in dir(obj):
                if (attr.startswith("_") and not attr.startswith("__")) or attr in PROTOCOL:
                    continue
                raw = inspect.getattr_static(obj, attr)
                if isinstance(raw, property):
                    raw = raw.fget
                elif isinstance(raw, (classmethod, staticmethod)):
                    raw = raw.__func__
                if inspect.isfunction(raw) and _own(raw):
                    found.setdefault(f"{prefix}.{name}.{attr}", raw)
    return found


def _signatures(f: object) -> list[object]:
    """The signatures callers see: the overloads when there are overloads."""
    overloads = [getattr(g, "__func__", g) for g in typing.get_overloads(f)]  # classmethods
    return overloads or [f]  # type: ignore[arg-type]


def test_the_public_surface_is_found():
    names = _public_callables()
    for name in ("ra.segment_sum", "ra.RaggedArray.__getitem__", "ra.RaggedArray.values",
                 "ra.RaggedImageBatch.channels", "ra.nn.DeepSet.forward", "ra.data.collate",
                 "ra.testing.assert_ragged_equal", "ra.load", "ra.cat"):  # fmt: skip
        assert name in names
    assert not any(name.startswith("ra.testing.RaggedArray") for name in names)


@pytest.mark.skipif(not hasattr(typing, "get_overloads"), reason="needs Python >= 3.11")
def test_public_signatures_are_complete_and_name_no_any():
    untyped, with_any = [], []
    for name, f in _public_callables().items():
        for g in _signatures(f):
            hints = dict(g.__annotations__)  # type: ignore[attr-defined]
            params = inspect.signature(g).parameters  # type: ignore[arg-type]
            needed = [p for p in params if p not in ("self", "cls")] + ["return"]
            missing = [p for p in needed if p not in hints]
            if missing:
                untyped.append(f"{name}: {missing}")
            anys = [k for k, v in hints.items() if re.search(r"\bAny\b", str(v))]
            if anys and name not in ALLOWED_ANY:
                with_any.append(f"{name}: {anys}")
    assert not untyped, f"public signatures must annotate every parameter and the result: {untyped}"
    assert not with_any, f"public signatures must not use Any (see raggedarray._types): {with_any}"


# ------------------------------------------------------------------------ mypy on user code

GOOD = """
    from pathlib import Path
    from typing import Any

    import numpy as np
    import torch
    from matplotlib.figure import Figure, SubFigure
    from typing_extensions import assert_type

    import raggedarray as ra

    Array = np.ndarray | torch.Tensor
    v, t, off = np.ones(3), torch.ones(3), [0, 1, 3]
    u: Array = v  # a backend not known statically

    {segment_checks}
    assert_type(ra.segment_var(v, off, correction=0, fill=np.nan), np.ndarray)
    assert_type(ra.segment_std(t, np.array(off), fill=-1), torch.Tensor)

    x = ra.RaggedArray.from_lengths(v, [1, 2])
    b = ra.RaggedImageBatch.from_list([np.zeros((2, 1, 4, 4)), torch.zeros(1, 1, 4, 4)])
    assert_type(x, ra.RaggedArray[np.ndarray])
    assert_type(ra.RaggedArray(u, x.offsets), ra.RaggedArray)  # the bare name: the union
    assert_type(ra.RaggedArray.from_list([v, v]), ra.RaggedArray[np.ndarray])
    assert_type(ra.RaggedArray.from_list([[1, 2], [3]]), ra.RaggedArray[np.ndarray])
    assert_type(ra.RaggedArray.from_list([t, t], dtype=torch.half), ra.RaggedArray[torch.Tensor])
    assert_type(ra.RaggedArray.from_list([v], device="cpu"), ra.RaggedArray[torch.Tensor])
    assert_type(ra.RaggedArray.from_list([v, t]), ra.RaggedArray)  # torch at run time
    assert_type(ra.RaggedArray.from_list([u]), ra.RaggedArray)
    assert_type(
        ra.RaggedImageBatch.from_list([torch.zeros(1, 4, 4)]), ra.RaggedImageBatch[torch.Tensor]
    )
    n4 = np.zeros((1, 4, 4))
    assert_type(ra.RaggedImageBatch.from_list([n4]), ra.RaggedImageBatch[np.ndarray])
    assert_type(b, ra.RaggedImageBatch)
    assert_type(ra.RaggedImageBatch(b.values, b.offsets), ra.RaggedImageBatch)
    assert_type(ra.RaggedImageBatch.from_padded(*b.to_padded()), ra.RaggedImageBatch)
    assert_type(x[0], np.ndarray)
    k: np.integer = np.int64(-1)  # numpy's stubs make np.int64(-1) itself Any
    assert_type(x[k], np.ndarray)
    assert_type(b[0], Array)
    assert_type(b[1:], ra.RaggedImageBatch)
    assert_type(b[[1, 0]], ra.RaggedImageBatch)
    assert_type(b[np.array([True, False])], ra.RaggedImageBatch)
    assert_type(b[torch.tensor([0])], ra.RaggedImageBatch)
    assert_type(list(b), list[Array])
    assert_type(b.values, Array)
    assert_type(b.offsets, Array)
    assert_type(b.host_lengths, np.ndarray)
    assert_type(b.dtype, np.dtype | torch.dtype)
    assert_type(b.device, torch.device)
    assert_type(b.item_shape, tuple[int, ...])
    assert_type(b.channels, int)
    assert_type(b.to("cpu"), ra.RaggedImageBatch)
    assert_type(b.to(torch.float16), ra.RaggedImageBatch)
    assert_type(b.to(device=torch.device("cpu"), dtype=np.float32), ra.RaggedImageBatch)
    assert_type(b.torch().numpy().clone().detach(), ra.RaggedImageBatch[np.ndarray])
    assert_type(b.softmax(), ra.RaggedImageBatch)
    assert_type(b + 1, ra.RaggedImageBatch)
    assert_type(2 * b, ra.RaggedImageBatch)
    assert_type(-b, ra.RaggedImageBatch)
    assert_type(b > 0.5, ra.RaggedImageBatch)
    assert_type(x + x, ra.RaggedArray[np.ndarray])
    assert_type(b.subsample(1, generator=0), ra.RaggedImageBatch)
    assert_type(b.sum(), Array)
    assert_type(b.var(correction=0, fill=np.nan), Array)
    assert_type(b.to_padded(fill=0.5, max_length=2), tuple[Array, Array])
    assert_type(b.map(lambda a: a * 2, chunk_size=64), ra.RaggedArray)
    def double(t: torch.Tensor) -> torch.Tensor:  # a function typed for one backend
        return t * 2
    assert_type(b.map(double), ra.RaggedArray)
    assert_type(b.map(torch.nn.Conv2d(1, 2, 3), device="cpu"), ra.RaggedArray[torch.Tensor])
    assert_type(x.map(np.exp), ra.RaggedArray[np.ndarray])  # numpy values: numpy chunks
    def to_tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a)
    def to_numpy(t: torch.Tensor) -> np.ndarray:
        return t.numpy()
    assert_type(x.torch().map(double), ra.RaggedArray[torch.Tensor])
    # where numpy's Any-filled types leave two overloads matching, mypy says Any: no
    # narrowing is needed either way (the bare union would need it)
    x.map(to_tensor).values.float()
    x.map(double, device="cpu").values.float()  # tensors on a device
    x.torch().map(to_numpy).values.astype(np.float32)
    x.map(lambda a: a * 2).values.sum()
    assert_type(x.broadcast(x.mean()), ra.RaggedArray[np.ndarray])
    assert_type(ra.cat([b, b]), ra.RaggedImageBatch)
    assert_type(ra.cat([x, b]), ra.RaggedArray)
    assert_type(b.to_nested(), torch.Tensor)
    assert_type(b.show(max_items=2), Figure | SubFigure)
    assert_type(b.equal(x), bool)
    assert_type(ra.allclose(x, b, rtol=1e-3), bool)

    model = ra.nn.DeepSet(torch.nn.Flatten(), torch.nn.Linear(16, 2), pool="mean")
    assert_type(model.forward(b.torch(), covariates=torch.ones(3)), torch.Tensor)
    assert_type(ra.nn.AttentionPool(4, 8).weights(x), ra.RaggedArray)
    assert_type(ra.nn.SegmentPool("max").forward(x), torch.Tensor)

    assert_type(ra.collate([v, t]), ra.RaggedArray)
    assert_type(ra.data.collate([{{"x": v, "y": 1}}], ragged="x"), dict[str, Any])
    assert_type(ra.data.RaggedCollate(ragged=0)([(v, 1)]), ra.data.Batch)
    sampler = ra.data.BudgetBatchSampler(x.host_lengths, max_items=4)
    assert_type(next(iter(sampler)), list[int])
    ra.save(Path("f.safetensors"), {{"x": x, "y": v}})
    loaded = ra.load("f.safetensors", mmap=True)
    assert_type(loaded, ra.RaggedArray | dict[str, ra.RaggedArray | Array])
    assert_type(ra.testing.reference_reduce("sum", t, off), torch.Tensor)
"""

# Each line is a misuse the checker must flag.
BAD = """
    import numpy as np

    import raggedarray as ra

    x = ra.RaggedArray.from_lengths(np.ones(3), [1, 2])
    ra.segment_sum([1.0, 2.0], [0, 2])
    ra.segment_mean(np.ones(2), 2)
    x.sum(fill="zero")
    x.to(device=1.5)
    x["a"]
    x.map(3)
    x.map(str.upper)
    ra.cat([x.values])
    ra.RaggedArray.from_list([x])
    ra.nn.DeepSet(1, 2)
    ra.testing.assert_ragged_equal(x, x.values)
"""

SEGMENT_FUNCTIONS = [n for n in ra.__all__ if n.startswith("segment_")]


# A user's ``mypy --strict`` with the package installed: strict on the user's code, while
# the package's own internals (which site-packages would keep quiet) report nothing.
# numpy < 2's stubs want type arguments on a bare ``np.ndarray`` in the user's own annotations
# (numpy 2's have defaults): not what these runs check, so that one code is off.
STRICT_CONFIG = """
[mypy]
strict = True
python_version = 3.10
disable_error_code = type-arg
[mypy-raggedarray,raggedarray.*]
ignore_errors = True
[mypy-awkward.*,tqdm.*]
ignore_missing_imports = True
"""


def _mypy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, *, strict: bool = False
) -> tuple[str, int]:
    api = pytest.importorskip("mypy.api", reason="mypy is installed by the test extra")
    script = tmp_path / "user.py"
    script.write_text(textwrap.dedent(source))
    monkeypatch.setenv("MYPYPATH", str(ROOT))  # this checkout's package, not an installed one
    monkeypatch.chdir(tmp_path)
    # the package's own config and cache (.ci/run has just filled it): seconds, not a minute
    config, cache = (
        ROOT / "pyproject.toml",
        os.environ.get("MYPY_CACHE_DIR", str(ROOT / ".mypy_cache")),
    )
    if strict:  # other options: a cache of their own, so neither run invalidates the other
        config, cache = tmp_path / "strict.ini", str(Path(cache) / "strict")
        config.write_text(STRICT_CONFIG)
    args = [str(script), "--config-file", str(config), "--cache-dir", cache]
    args += ["--no-error-summary", "--show-error-codes", "--python-executable", sys.executable]
    stdout, stderr, status = api.run(args)
    return stdout + stderr, status


def test_mypy_infers_the_promised_types(tmp_path, monkeypatch):
    checks = "\n    ".join(
        f"assert_type(ra.{name}(v, off), np.ndarray)\n    "
        f"assert_type(ra.{name}(t, torch.tensor(off)), torch.Tensor)\n    "
        f"assert_type(ra.{name}(u, off), Array)  # a union input: a union result"
        for name in SEGMENT_FUNCTIONS
    )
    out, status = _mypy(tmp_path, monkeypatch, GOOD.format(segment_checks=checks))
    assert status == 0, out


def test_mypy_flags_misuse(tmp_path, monkeypatch):
    out, status = _mypy(tmp_path, monkeypatch, BAD)
    assert status == 1, out
    source = textwrap.dedent(BAD).splitlines()
    first_bad = next(i for i, line in enumerate(source, 1) if line.startswith("ra.segment_sum"))
    flagged = {int(m) for m in re.findall(r"user\.py:(\d+):", out)}
    assert flagged == set(range(first_bad, len(source) + 1)), out


# The ragged classes are generic over their values' type: user code copied from the docs
# type-checks under ``mypy --strict`` with no isinstance narrowing.
STRICT_GOOD = """
    from typing import Any

    import numpy as np
    import torch
    from typing_extensions import assert_type

    import raggedarray as ra

    Array = np.ndarray | torch.Tensor
    x = ra.RaggedArray.from_lengths(torch.randn(5, 3), [2, 3])
    assert_type(x, ra.RaggedArray[torch.Tensor])
    torch.log(x.lengths.float())
    assert_type(x.values, torch.Tensor)
    assert_type(x.offsets, torch.Tensor)
    assert_type(x.segment_ids, torch.Tensor)
    assert_type(x[0], torch.Tensor)
    assert_type(x.to_list(), list[torch.Tensor])
    assert_type(list(x), list[torch.Tensor])
    assert_type(x.sum(), torch.Tensor)
    assert_type(x.logsumexp(), torch.Tensor)
    assert_type(x.argmax(), torch.Tensor)
    assert_type(x.median(), torch.Tensor)
    assert_type(x.any(), torch.Tensor)
    assert_type(x.to_padded(), tuple[torch.Tensor, torch.Tensor])
    assert_type(x[1:], ra.RaggedArray[torch.Tensor])
    assert_type(x.softmax(), ra.RaggedArray[torch.Tensor])
    assert_type(x.cumsum(), ra.RaggedArray[torch.Tensor])
    assert_type(x.sort(), tuple[ra.RaggedArray[torch.Tensor], ra.RaggedArray[torch.Tensor]])
    assert_type(x.topk(1)[1], ra.RaggedArray[torch.Tensor])
    assert_type(x * 2 + 1, ra.RaggedArray[torch.Tensor])
    assert_type(x.clone().float(), ra.RaggedArray[torch.Tensor])
    assert_type(x.subsample(1), ra.RaggedArray[torch.Tensor])
    assert_type(x.broadcast(x.mean()), ra.RaggedArray[torch.Tensor])
    assert_type(x.numpy(), ra.RaggedArray[np.ndarray])
    assert_type(ra.cat([x, x]), ra.RaggedArray[torch.Tensor])

    def f(b: ra.RaggedImageBatch[torch.Tensor], net: torch.nn.Module) -> torch.Tensor:
        return b.map(net).mean()

    b = ra.RaggedImageBatch.from_lengths(np.zeros((3, 1, 4, 4), np.float32), [1, 2])
    assert_type(b, ra.RaggedImageBatch[np.ndarray])
    assert_type(b.torch(), ra.RaggedImageBatch[torch.Tensor])
    tb = ra.RaggedImageBatch(torch.zeros(3, 1, 4, 4), [0, 3])
    assert_type(tb, ra.RaggedImageBatch[torch.Tensor])
    assert_type(b[::-1], ra.RaggedImageBatch[np.ndarray])
    f(b.torch(), torch.nn.Flatten())

    y = x.numpy().torch()
    t: torch.Tensor = y.values
    n = ra.RaggedArray.from_lengths(np.zeros(5), [2, 3])
    a: np.ndarray = n.sum()
    assert_type(n.var(), np.ndarray)
    assert_type(n.all(), np.ndarray)
    assert_type(ra.RaggedArray.from_segment_ids(np.zeros(2), [0, 1]), ra.RaggedArray[np.ndarray])
    assert_type(ra.RaggedArray.from_padded(*n.to_padded()), ra.RaggedArray[np.ndarray])
    assert_type(ra.RaggedArray(np.zeros(2), np.array([0, 2])), ra.RaggedArray[np.ndarray])

    def g(r: ra.RaggedArray) -> Array:  # the bare name: values of either backend
        return r.sum()

    g(x), g(n), g(b)
    u: Array = np.zeros(5)
    assert_type(ra.RaggedArray.from_lengths(u, [5]), ra.RaggedArray[Array])
    assert_type(ra.RaggedArray.from_list([np.zeros(1)]), ra.RaggedArray[np.ndarray])
"""

# Each line is a misuse the checker must still flag under --strict.
STRICT_BAD = """
    import numpy as np
    import torch

    import raggedarray as ra

    n = ra.RaggedArray.from_lengths(np.zeros(5), [2, 3])
    t: torch.Tensor = n.sum()
    n.lengths.float()
    x: ra.RaggedArray[torch.Tensor] = n
    ra.RaggedArray[int]
"""


def test_mypy_strict_follows_the_values_type(tmp_path, monkeypatch):
    out, status = _mypy(tmp_path, monkeypatch, STRICT_GOOD, strict=True)
    assert status == 0, out


def test_mypy_strict_flags_a_wrong_backend(tmp_path, monkeypatch):
    out, status = _mypy(tmp_path, monkeypatch, STRICT_BAD, strict=True)
    assert status == 1, out
    source = textwrap.dedent(STRICT_BAD).splitlines()
    first_bad = next(i for i, line in enumerate(source, 1) if line.startswith("t: "))
    flagged = {int(m) for m in re.findall(r"user\.py:(\d+):", out)}
    assert flagged == set(range(first_bad, len(source) + 1)), out


def test_the_types_do_not_import_torch():
    # the aliases name torch only while type checking: numpy-only work never pays for torch
    code = "import sys, raggedarray, raggedarray._types; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr

"""A pickle reader that reconstructs data and never imports or runs the file's code.

NVlabs' ``.pkl`` files and TorchScript archives hold full pickles: a pickle may name any importable
function and have it called while loading (``os.system`` included); NVlabs' own loader ``exec``s the module
source embedded in the file, and ``torch.jit.load`` runs the archive's compiled ``__setstate__`` methods.
:class:`RestrictedUnpickler` resolves every global a pickle names through three lists:

- data reconstructors (tensors, storages, numpy arrays and dtypes, OrderedDict, set ...) are mapped to
  checked implementations that only build data;
- classes of the namespaces it is given (NVlabs' ``torch_utils.*``, ``dnnlib.*``, ``training.*`` and
  ``torch.nn`` for StyleGAN pickles; ``__torch__.*`` for TorchScript) become :class:`Stub` s: inert objects
  that record the arguments and state the pickle gives them (their own ``__setstate__`` only stores it),
  so a loader can read a network's parameters without its code;
- anything else is refused with :class:`CheckpointError` before it can be called.
"""
from __future__ import annotations

import io
import pickle
import warnings
from collections import OrderedDict
from typing import Any, BinaryIO, Callable

import numpy as np
import torch

from ice_exp.checkpoints.errors import CheckpointError, described

try:  # numpy >= 2 moved the pickle helpers to numpy._core
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _np_multiarray


STYLEGAN_NAMESPACES = ("torch_utils", "dnnlib", "training", "torch.nn.modules")  # NVlabs' code and torch.nn


class Stub:
    """Inert stand-in for a class or function of the checkpoint's code: records what the pickle passes."""

    qualname = ""  # "module.name" of the global this stub stands for

    def __new__(cls, *args: Any, **kwargs: Any) -> "Stub":
        obj = object.__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items, obj.list = args, kwargs, None, {}, []
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass  # everything was recorded in __new__ (NEWOBJ calls only __new__, REDUCE calls both)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list.append(value)

    def extend(self, values: Any) -> None:
        self.list.extend(values)

    def __repr__(self) -> str:
        return f"<stub {self.qualname}>"


class EasyDict(dict):
    """dnnlib.util.EasyDict as plain data (a dict that also allows attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckpointError(f"malformed pickle data: {what}")


def _load_from_bytes(data: bytes) -> Any:
    """torch.storage._load_from_bytes: a storage serialised with torch.save, read with weights_only."""
    _check(isinstance(data, (bytes, bytearray)), "storage payload is not bytes")
    try:
        return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception:  # torch's text would advise weights_only=False
        raise CheckpointError("malformed pickle data: a tensor storage is not readable torch data") from None


def _rebuild_tensor(storage: Any, offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any) -> torch.Tensor:
    _check(isinstance(storage, torch.storage.TypedStorage), f"tensor storage is {type(storage).__name__}")
    return torch.empty((0,), dtype=storage.dtype).set_(storage._untyped_storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_: Any) -> torch.Tensor:
    _check(isinstance(data, torch.Tensor), "parameter data is not a tensor")
    return data.detach()


def _rebuild_from_type(func: Callable[..., Any], new_type: Any, args: tuple, state: Any) -> torch.Tensor:
    out = func(*args)  # func was resolved by find_class: a checked rebuild function or a Stub
    _check(isinstance(out, torch.Tensor), "tensor rebuild did not give a tensor")
    return out


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    _check(subtype is np.ndarray, "numpy array of a subclass")
    return _np_multiarray._reconstruct(np.ndarray, shape, dtype)


def _np_dtype(*args: Any) -> np.dtype:
    dtype = np.dtype(*args)
    _check(not dtype.hasobject, "numpy object dtype")
    return dtype


def _np_scalar(dtype: np.dtype, *args: Any) -> Any:
    _check(isinstance(dtype, np.dtype) and not dtype.hasobject, "numpy scalar of an object dtype")
    return _np_multiarray.scalar(dtype, *args)


def _np_frombuffer(buf: Any, dtype: np.dtype, shape: tuple[int, ...], order: str) -> np.ndarray:
    _check(isinstance(dtype, np.dtype) and not dtype.hasobject, "numpy buffer of an object dtype")
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order=order).copy()


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    _check(isinstance(text, str) and encoding in ("latin1", "latin-1"), "bytes encoding")
    return text.encode("latin1")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    _check(isinstance(cls, type) and issubclass(cls, (Stub, EasyDict)) and base is object, "object reconstruction")
    obj = cls.__new__(cls)
    if state is not None:
        obj.__setstate__(state) if isinstance(obj, Stub) else obj.__dict__.update(state)
    return obj


def _safe_globals() -> dict[tuple[str, str], Any]:
    safe: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type,
        ("torch.storage", "_load_from_bytes"): _load_from_bytes,
        ("torch", "Tensor"): torch.Tensor,
        ("torch", "Size"): torch.Size,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("builtins", "bytearray"): bytearray,
        ("builtins", "complex"): complex,
        ("_codecs", "encode"): _codecs_encode,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): _np_dtype,
        ("dnnlib", "EasyDict"): EasyDict,
        ("dnnlib.util", "EasyDict"): EasyDict,
    }
    for core in ("numpy.core", "numpy._core"):
        safe[(f"{core}.multiarray", "_reconstruct")] = _np_reconstruct
        safe[(f"{core}.multiarray", "scalar")] = _np_scalar
        safe[(f"{core}.numeric", "_frombuffer")] = _np_frombuffer
    for name in dir(torch):
        if isinstance(getattr(torch, name, None), torch.dtype):
            safe[("torch", name)] = getattr(torch, name)
    return safe


SAFE_GLOBALS = _safe_globals()
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler whose ``find_class`` never imports: checked data builders, Stubs for the classes of
    ``stub_namespaces``, or refusal."""

    def __init__(self, file: BinaryIO, stub_namespaces: tuple[str, ...] = STYLEGAN_NAMESPACES) -> None:
        super().__init__(file, encoding="latin1")
        self.stub_namespaces = stub_namespaces
        self._stubs: dict[str, type[Stub]] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        if (module, name) in SAFE_GLOBALS:
            return SAFE_GLOBALS[(module, name)]
        if any(module == ns or module.startswith(ns + ".") for ns in self.stub_namespaces):
            qualname = f"{module}.{name}"
            if qualname not in self._stubs:
                self._stubs[qualname] = type(name, (Stub,), {"qualname": qualname})
            return self._stubs[qualname]
        raise CheckpointError(
            f"refusing to load: the pickle references {module}.{name}, which no weight file needs "
            f"(unpickling could run it; nothing was run)")

    def persistent_load(self, pid: Any) -> Any:
        raise CheckpointError("refusing to load: the pickle uses persistent ids (not a plain network pickle)")


def load_pickle(file: BinaryIO) -> Any:
    """Unpickle a StyleGAN ``file`` with :class:`RestrictedUnpickler`; every failure becomes a CheckpointError."""
    return unpickle(RestrictedUnpickler(file))


def unpickle(unpickler: RestrictedUnpickler) -> Any:
    """``unpickler.load()``; a malformed stream (truncated, random bytes: many error types, a bare
    MemoryError for a length field larger than the file) becomes a CheckpointError saying so."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TypedStorage deprecation, numpy.core aliases
            return unpickler.load()
    except CheckpointError:
        raise
    except Exception as e:  # truncated / corrupt streams raise many different types
        raise CheckpointError(f"not a readable pickle: the data is malformed or cut short ({described(e)})") from e

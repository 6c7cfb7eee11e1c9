"""TorchScript archives read as data: their tensors by dotted name, without ``torch.jit.load``.

face-alignment 1.3–1.4 published its FAN weights as TorchScript ``.zip`` archives. ``torch.jit.load`` runs
code while it loads them: each module's compiled ``__setstate__`` (C++, unseen by Python's audit hooks),
which may open, create and overwrite files; torch itself refuses these archives under ``weights_only=True``.
Here the archive's ``data.pkl`` goes through the restricted unpickler with every ``__torch__`` class as an
inert :class:`~ice_exp.checkpoints.safe_pickle.Stub` (its state recorded, never set by the archive's
code) and every tensor read from the archive's ``data/`` records; ``code/`` is never read.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from ice_exp.checkpoints.errors import CheckpointError
from ice_exp.checkpoints.safe_pickle import RestrictedUnpickler, Stub, unpickle


def is_torchscript(names: list[str]) -> bool:
    """A zip's member names are a TorchScript archive's: ``<root>/constants.pkl`` beside ``<root>/data.pkl``
    (a ``torch.save`` zip has ``data.pkl`` only)."""
    return any(n.count("/") == 1 and n.endswith("/constants.pkl") for n in names)


class StorageType:
    """What the pickle's ``torch.FloatStorage`` (etc.) resolves to: only its dtype, nothing callable."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


STORAGE_TYPES = {f"{name}Storage": StorageType(dtype) for name, dtype in {
    "Float": torch.float32, "Double": torch.float64, "Half": torch.float16, "BFloat16": torch.bfloat16,
    "Long": torch.int64, "Int": torch.int32, "Short": torch.int16, "Char": torch.int8, "Byte": torch.uint8,
    "Bool": torch.bool, "ComplexFloat": torch.complex64, "ComplexDouble": torch.complex128}.items()}


def _list_of(kind: type | tuple[type, ...]):
    """torch.jit._pickle's build_intlist / build_doublelist / ...: the list itself, its items checked."""
    def build(items: Any) -> list:
        if not isinstance(items, list) or not all(isinstance(i, kind) for i in items):
            raise CheckpointError(f"malformed TorchScript data: expected a list of {kind}, got {type(items).__name__}")
        return items
    return build


def _restore_type_tag(value: Any, type_tag: Any) -> Any:
    return value  # a container's static type, for TorchScript only


JIT_BUILDERS = {"build_intlist": _list_of(int), "build_doublelist": _list_of(float), "build_boollist": _list_of(bool),
                "build_tensorlist": _list_of(Tensor), "restore_type_tag": _restore_type_tag}


class TorchScriptUnpickler(RestrictedUnpickler):
    """data.pkl of one archive: ``__torch__`` classes as Stubs, storages from ``<root>/data/<key>``."""

    def __init__(self, file: BinaryIO, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(file, stub_namespaces=("__torch__",))
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_TYPES:
            return STORAGE_TYPES[name]
        if module == "torch.jit._pickle" and name in JIT_BUILDERS:
            return JIT_BUILDERS[name]
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        """('storage', storage type, key, location, numel) -> a CPU TypedStorage of the record's bytes."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise CheckpointError(f"malformed TorchScript data: unknown persistent id {pid!r:.80}")
        dtype, key, numel = pid[1].dtype, pid[2], pid[4]
        try:
            data = self.archive.read(f"{self.root}/data/{key}")
        except KeyError:
            raise CheckpointError(f"malformed TorchScript data: no tensor record data/{key}") from None
        size = torch.empty((), dtype=dtype).element_size()
        if len(data) < numel * size:
            raise CheckpointError(f"truncated TorchScript tensor record data/{key} ({len(data)} bytes for {numel} values)")
        untyped = torch.UntypedStorage.from_buffer(data[: numel * size], dtype=torch.uint8) if numel else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)


def read_torchscript(path: str | Path) -> dict[str, Tensor]:
    """{dotted attribute path: tensor} of every tensor attribute in the archive's module tree (parameters and
    buffers, as ``ScriptModule.state_dict()`` names them). A module whose state is not an attribute dict (a
    class with its own ``__getstate__`` / ``__setstate__``: code that ``torch.jit.load`` would run) is
    refused; nothing of it is run either way."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        roots = [n.split("/")[0] for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not roots:
            raise CheckpointError("a zip archive without data.pkl (not a TorchScript or torch.save file)")
        root = roots[0]
        if f"{root}/byteorder" in names and archive.read(f"{root}/byteorder").strip() != b"little":
            raise CheckpointError("a big-endian TorchScript archive (only little-endian files are read)")
        with archive.open(f"{root}/data.pkl") as f:
            module = unpickle(TorchScriptUnpickler(f, archive, root))
    return dict(_module_tensors(module, ""))


def _module_tensors(obj: Any, prefix: str) -> Any:
    if isinstance(obj, Tensor):
        yield prefix, obj
    elif isinstance(obj, Stub):
        if not isinstance(obj.state, dict):
            raise CheckpointError(f"the TorchScript class {obj.qualname} restores itself with its own __setstate__ "
                                  f"(code that torch.jit.load would run; weights never need it): refused, nothing was run")
        for name, value in obj.state.items():
            yield from _module_tensors(value, f"{prefix}.{name}" if prefix else str(name))

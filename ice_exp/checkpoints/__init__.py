"""Reading weight files without running anything from them (docs/reliability.md).

``reading`` is the one reader of torch files (``torch.save`` zips and legacy files, TorchScript archives
read as data by ``torchscript``); ``safe_pickle`` is the restricted unpickler that both TorchScript and
NVlabs' StyleGAN pickles go through; ``errors`` names the model, the file and the cause of every failure.
"""
from ice_exp.checkpoints.errors import CheckpointError, MissingCheckpoint, located
from ice_exp.checkpoints.reading import LEGACY_TORCH_MAGIC, ZIP_MAGIC, file_format, load_state, read_checkpoint, sha256_of

__all__ = ["CheckpointError", "LEGACY_TORCH_MAGIC", "MissingCheckpoint", "ZIP_MAGIC", "file_format", "load_state",
           "located", "read_checkpoint", "sha256_of"]

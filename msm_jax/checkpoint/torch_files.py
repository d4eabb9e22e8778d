"""Reading PyTorch checkpoints (tensors only, never code) for launch.import_checkpoint.

A PyTorch .pth/.bin file is a pickle, and unpickling can run any code the file names. Here such
files are read only with torch.load(weights_only=True), whose unpickler builds tensors and plain
containers and refuses everything else; argparse.Namespace, which facebookresearch/mae's training
checkpoints store their command line in ('args'), is the one class allowed besides: a bag of
attributes, whose unpickling runs nothing. .safetensors files hold no code at all.

torch and safetensors are imported only here, when a file is read (`pip install 'msm-jax[torch]'`).
"""
import argparse
import json
import os
import pickle
import warnings

import numpy as np

# The weight files of a Hugging Face save_pretrained directory, in the order tried.
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
HF_CONFIG_FILE = "config.json"


class CheckpointImportError(ValueError):
  """A checkpoint that cannot be imported; the message names the file and the tensor or key."""


def _import_torch():
  try:
    import safetensors.torch
    import torch
  except ImportError as error:
    raise CheckpointImportError(
        f"importing PyTorch checkpoints needs torch and safetensors ({error}); install them with: "
        "pip install 'msm-jax[torch]'") from None
  return torch, safetensors.torch


def _first_line(error: Exception, *markers: str) -> str:
  """The informative line of a library's (often multi-paragraph) error message."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  for line in lines:
    if any(marker in line for marker in markers):
      return line
  return lines[0] if lines else type(error).__name__


def _load_pickle(path: str) -> dict:
  torch, _ = _import_torch()
  try:
    with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
      # Protocols above 2 (pickle.dump's default) are refused below if unsupported; no warning.
      warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
      loaded = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    reason = _first_line(error, "GLOBAL", "Unsupported")
    raise CheckpointImportError(
        f"{path}: refused to load it: its pickle holds more than tensors and plain containers "
        f"({reason}), and unpickling it could run code. Only tensors are read (torch.load with "
        "weights_only=True); save the state dict alone, or as .safetensors.") from None
  except Exception as error:  # a truncated or foreign file: torch raises several types
    raise CheckpointImportError(
        f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: "
        f"{_first_line(error)})") from None
  if not isinstance(loaded, dict):
    raise CheckpointImportError(f"{path}: holds a {type(loaded).__name__}, not a state dict.")
  # facebookresearch/mae's checkpoints keep the weights under 'model' (beside optimizer state,
  # epoch and args, which an import does not need); a bare state dict is taken as it is.
  state = loaded.get("model", loaded)
  if not isinstance(state, dict):
    raise CheckpointImportError(f"{path}: 'model' is a {type(state).__name__}, not a state dict.")
  return state


def _load_safetensors(path: str) -> dict:
  _, safetensors_torch = _import_torch()
  try:
    return safetensors_torch.load_file(path, device="cpu")
  except Exception as error:  # safetensors' own error type differs between versions
    raise CheckpointImportError(
        f"{path}: not a readable safetensors file ({type(error).__name__}: "
        f"{_first_line(error)})") from None


def _to_numpy(state: dict, path: str) -> dict[str, np.ndarray]:
  """Floating tensors as float32 numpy arrays (an exact widening of float16/bfloat16)."""
  torch, _ = _import_torch()
  arrays = {}
  for name, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise CheckpointImportError(f"{path}: {name!r} is a {type(value).__name__}, not a tensor.")
    if not value.is_floating_point():
      raise CheckpointImportError(f"{path}: tensor {name!r} has dtype {value.dtype}; only "
                                  "floating-point weights can be imported.")
    arrays[name] = value.detach().to(torch.float32).numpy()
  return arrays


def read_tensors(path: str) -> dict[str, np.ndarray]:
  """{name: float32 array} of one weight file: .safetensors, or a PyTorch pickle (.pth, .bin)."""
  if not os.path.isfile(path):
    raise CheckpointImportError(f"{path}: no such file.")
  if path.endswith(".safetensors"):
    return _to_numpy(_load_safetensors(path), path)
  return _to_numpy(_load_pickle(path), path)


def read_hf_config(directory: str) -> dict:
  """The config.json that save_pretrained writes beside a Hugging Face model's weights."""
  path = os.path.join(directory, HF_CONFIG_FILE)
  if not os.path.isfile(path):
    raise CheckpointImportError(f"{path}: no such file; a Hugging Face model's weights need the "
                                f"{HF_CONFIG_FILE} saved beside them.")
  try:
    with open(path) as f:
      config = json.load(f)
  except (OSError, json.JSONDecodeError) as error:
    raise CheckpointImportError(f"{path}: not readable JSON ({error}).") from None
  if not isinstance(config, dict):
    raise CheckpointImportError(f"{path}: holds a {type(config).__name__}, not an object.")
  return config


def read_hf_directory(directory: str) -> tuple[dict[str, np.ndarray], str]:
  """(tensors, weight file) of a Hugging Face save_pretrained directory."""
  weights = [os.path.join(directory, f) for f in HF_WEIGHT_FILES
             if os.path.isfile(os.path.join(directory, f))]
  if not weights:
    raise CheckpointImportError(f"{directory}: holds none of {', '.join(HF_WEIGHT_FILES)} "
                                "(sharded checkpoints are not supported).")
  return read_tensors(weights[0]), weights[0]

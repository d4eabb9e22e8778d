"""Inference with a finetuned model on the user's own files.

Segmentation: a SigMF or .npy IQ recording -> one spectrogram per fixed-duration window (the same
STFT as the training scenes) -> per-pixel class maps. Activities: a CSI file (NTU-Fi .mat, UT-HAR
array, Widar/Intel 5300 .dat) -> class probabilities per recording. Sound: a WAV / FLAC file ->
log-mel clips with the front end the model was finetuned with -> class probabilities per clip.
The model, its classes, the normalisation statistics and an audio model's front end all come from
the finetuning workdir's checkpoint.
"""
import dataclasses

import ml_collections
import numpy as np

from msm_jax.checkpoint.manager import restore_params
from msm_jax.data.normalize import normalize


@dataclasses.dataclass
class Finetuned:
  """A finetuned model restored from its workdir: `predict(images)` gives probabilities."""
  config: ml_collections.ConfigDict
  task: object  # FinetuneTask
  params: dict

  @property
  def input_shape(self):
    return tuple(self.config.input_shape)

  @property
  def classes(self):
    return self.task.classes

  @property
  def frontend(self) -> dict | None:
    """The audio front-end settings of an audio model, else None."""
    return self.task.frontend

  def probabilities(self, power: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Linear power (N, Nt, Nf, C) -> class probabilities (N, K) or (N, Nt, Nf, K)."""
    if power.shape[1:] != self.input_shape:
      raise ValueError(f"inputs of shape {power.shape[1:]} do not fit the model's "
                       f"{self.input_shape} (time, frequency, channels).")
    images = normalize(power.astype(np.float32), self.task.stats)
    return np.concatenate([np.asarray(self.task.predict(self.params, images[i:i + batch_size]))
                           for i in range(0, len(images), batch_size)])


def load_finetuned(workdir: str, step: int | None = None) -> Finetuned:
  """Restores the finetuned model saved in `workdir` (the latest checkpoint, or `step`)."""
  from msm_jax.finetune.task import FinetuneTask  # the model code, not needed to read files
  params, description = restore_params(workdir, step)
  if "task" not in description:
    raise ValueError(f"{workdir} holds a pretraining checkpoint, not a finetuned model; finetune "
                     "it first with launch.finetune --config.init_from=" + workdir)
  config = ml_collections.ConfigDict()
  config.task, config.pool = description["task"], description["pool"]
  config.decoder_blocks = description["decoder_blocks"]
  config.input_shape = tuple(description["input_shape"])
  config.model = {k: v for k, v in description.items() if k in (
      "encoder", "decoder", "patch_size", "use_cls", "dtype", "drop_path", "encoder_name",
      "decoder_name")}
  config.update(init_from="", mode="full", trainable_blocks=0, class_weights=(),
                label_smoothing=0.0, mixup_alpha=0.0)
  task = FinetuneTask(config, description["classes"], description["stats"],
                      description.get("frontend"))
  return Finetuned(config, task, params)


def recording_inputs(model: Finetuned, path: str, sample_rate=None, window_seconds=None):
  """The model inputs (linear power) of a file, and a description of each input."""
  from msm_jax.data.audio.files import is_audio_file
  if model.frontend or is_audio_file(path):
    return audio_inputs(model, path, sample_rate, window_seconds)
  if model.config.task == "segmentation":
    from msm_jax.data.radio.recordings import (read_recording, recording_spectrograms,
                                               window_samples)
    recording = read_recording(path, sample_rate)
    power = recording_spectrograms(recording, model.input_shape, window_seconds)
    # Windows are consecutive and whole (the tail that fills none is dropped): window i starts
    # at sample i * n.
    seconds = window_samples(recording, model.input_shape, window_seconds) / recording.sample_rate
    return power, [{"window": i, "start_s": i * seconds, "seconds": seconds}
                   for i in range(len(power))]
  from msm_jax.data.csi.recording import csi_to_power
  from msm_jax.data.csi.readers import read_recordings
  recordings = read_recordings(path)
  power = np.stack([csi_to_power(r.amplitude, model.input_shape) for r in recordings])
  return power, [dict(r.info) for r in recordings]


def audio_inputs(model: Finetuned, path: str, sample_rate=None, window_seconds=None):
  """The log-mel clips of an audio file (msm_jax.data.audio.files) with the model's front end,
  and each clip's place in the file."""
  from msm_jax.data.audio.files import file_spectrograms
  from msm_jax.data.audio.frontend import AudioFrontend
  if not model.frontend:
    raise ValueError(f"{path}: an audio file, but this model was finetuned on {model.config.task} "
                     f"of radio or CSI spectrograms (classes {', '.join(model.classes)}); "
                     "finetune an audio_* config (configs/finetune.py) to classify sound.")
  if sample_rate or window_seconds:
    raise ValueError("the sample rate and window options are for IQ recordings; an audio model "
                     "resamples and cuts clips as it was finetuned (its checkpoint holds the "
                     "front end).")
  frontend = AudioFrontend(**model.frontend)
  power, starts = file_spectrograms(path, frontend)
  return power, [{"clip": i, "start_s": float(start), "seconds": frontend.clip_seconds}
                 for i, start in enumerate(starts)]

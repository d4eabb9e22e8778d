"""WiFi CSI for activity sensing: a physics-based simulator with domains, and real-file readers.

numpy only (TensorFlow stays in the `csi_har` dataset builder). Public entry points:
  read_csi(path) -> CsiRecording       NTU-Fi .mat, UT-HAR .csv (NumPy binary), Widar3.0 .dat
  csi_to_power(amplitude, shape)       the one reduction to a model input: (H, W, C) power |H|^2,
                                       which the pipeline's 10*log10 makes amplitude in dB
  simulate_csi(rng, activity, ...)     one simulated recording
"""
from msm_jax.data.csi.readers import read_csi, read_recordings
from msm_jax.data.csi.recording import CsiFileError, CsiRecording, csi_to_power
from msm_jax.data.csi.simulate import simulate_csi

__all__ = ["CsiFileError", "CsiRecording", "csi_to_power", "read_csi", "read_recordings",
           "simulate_csi"]

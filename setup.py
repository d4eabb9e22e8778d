"""msm-jax: Masked Spectrogram Modeling (MSM) pretraining of ViT radio foundation models.

Requirements are ranges, so that msm-jax installs beside the JAX a machine already has (CUDA,
TPU, Colab) without replacing it: lower bounds where an API we use first appeared, an upper
bound only where a known break exists. The exact versions CI tests are pinned in
requirements/ci.txt (`pip install -e ".[test]" -c requirements/ci.txt`).
"""
from setuptools import find_packages, setup

CORE = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "ml-collections>=1.0",
    "absl-py>=2.1",
    "numpy>=1.26",
    "scipy>=1.11",  # the STFT and OFDM of the radio scenes; .mat files
    "matplotlib>=3.8",
    "tensorboard>=2.16",  # event files only; its writer here never imports TensorFlow
]
EXTRAS = {
    # Built datasets (launch.make_dataset, config.data.source=tfds): the tf.data pipeline, the
    # only code that imports TensorFlow, lazily. Colab and most TPU images already have both.
    "data": ["tensorflow-cpu>=2.16", "tensorflow-datasets>=4.9.4"],
    # JAX for accelerators, by JAX's own extras (pip's resolver keeps jax and jaxlib in step).
    "cuda": ["jax[cuda13]>=0.10"],
    "cuda12": ["jax[cuda12]>=0.10"],
    "tpu": ["jax[tpu]>=0.10"],
    # launch.import_checkpoint: PyTorch MAE / Hugging Face weights, read without unpickling code.
    "torch": ["torch>=2.6", "safetensors>=0.4"],
    # Audio files (WAV, FLAC) for the MaskSpec path: make_dataset --dataset=audio, predict.
    "audio": ["soundfile>=0.12"],
}
# Only the tests use transformers (the PyTorch reference models the import is checked against)
# and librosa (the reference of the log-mel front end).
EXTRAS["test"] = EXTRAS["data"] + EXTRAS["torch"] + EXTRAS["audio"] + [
    "transformers>=5.25", "librosa>=0.10", "pytest>=8", "pytest-xdist>=3.5", "csiread>=1.4"]

setup(
    name="msm-jax",
    version="0.1.0",
    description="Masked Spectrogram Modeling (MSM) pretraining of ViT radio foundation models",
    license="Apache-2.0",
    packages=find_packages(include=["msm_jax", "msm_jax.*", "launch", "configs"]),
    # C++ kernel sources, compiled on first use by msm_jax/kernels/native.py (not at install).
    package_data={"msm_jax.kernels": ["*.cc", "*.h"]},
    python_requires=">=3.11",
    install_requires=CORE,
    extras_require=EXTRAS,
)

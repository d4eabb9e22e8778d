"""msm-jax: Masked Spectrogram Modeling radio foundation models in JAX/Flax."""
from setuptools import find_packages, setup

# Pinned: the newest releases for Python 3.11 on which everything here was tested.
CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "orbax-checkpoint==0.12.8",
    "ml-collections==1.1.0",
    "absl-py>=2.1",
    "numpy>=1.26",
    "matplotlib>=3.8",
    "tensorboard==2.21.0",  # event files only; its writer here never imports TensorFlow
]
# Only the tf.data input pipeline and dataset building import TensorFlow, lazily.
# scipy reads MATLAB .mat frames (MathWorks-style segmentation data), imported only for them.
DATA = ["tensorflow-cpu==2.21.0", "tensorflow-datasets==4.9.10", "scipy==1.17.1"]

setup(
    name="msm-jax",
    version="0.1.0",
    description="Masked Spectrogram Modeling (MSM) pretraining of ViT radio foundation models",
    packages=find_packages(include=["msm_jax", "msm_jax.*", "launch", "configs"]),
    # C++ kernel sources, compiled on first use by msm_jax/kernels/native.py (not at install).
    package_data={"msm_jax.kernels": ["*.cc", "*.h"]},
    python_requires=">=3.11",
    install_requires=CORE + DATA,
    extras_require={"test": ["pytest>=8", "pytest-xdist==3.8.0", "csiread==1.4.1"]},
)

"""Input pipelines. Importing this package never imports TensorFlow (see source.make_source)."""
from msm_jax.data.source import Source, make_source

__all__ = ["Source", "make_source"]

"""Radio scenes (LTE / NR / other emitters through channels), the shared STFT, and recordings.

numpy only; `stft.tf_power_spectrogram` imports TensorFlow lazily when a tf.data map calls it.
"""

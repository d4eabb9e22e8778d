"""Audio for MaskSpec-style pretraining and clip classification: log-mel spectrograms of WAV / FLAC
files (frontend.py, the one front end; files.py, reading and resampling; clips.py, files cut into
model inputs), a tfds builder of a folder of files (dataset.py) and a generator of synthetic sound
events (events.py). soundfile is imported only where files are read.
"""

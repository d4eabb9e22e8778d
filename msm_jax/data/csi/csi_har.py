"""`csi_har`: a tensorflow-datasets builder of WiFi CSI activity examples, simulated or real.

Features: 'spectrogram' float32 CSI power |H|^2 (H subcarriers, W time steps, C antennas), block
averaged: csi_to_power of the recording's amplitude. The input pipeline's 10*log10 turns it into
CSI amplitude in dB (10*log10 |H|^2 = 20*log10 |H|), which is what the model sees. 'label' a
ClassLabel; domain fields 'room', 'subject', 'position', 'orientation', 'receiver' (int32, -1 where
the source does not say). Sources:
  simulator     CsiScenes(classes, layout, held_out): `num_examples` train examples (validation
                and test `num_eval_examples` each) from the domains of domains.py; train, validation
                and test domains follow `held_out` (domains.parse_held_out). Example i of split s is
                scenes(default_rng([seed, s, i]), shape, s): a dataset is a pure function of params.
  ntu_fi:PATH   NTU-Fi HAR/HumanID: test = test_amp, validation = every 10th train_amp file
                (sorted), train = the other train_amp files. No domain fields.
  ut_har:PATH   UT-HAR train/val/test arrays. No domain fields.
  widar:PATH    every *.dat under PATH; class = gesture ('gesture_<n>'), subject = user, position =
                location, orientation = orientation, receiver = receiver; split by gesture instance
                (`widar_splits`), so the receivers' files of one instance share a split.
Real files that would leave a split empty are refused before anything is built (`check_splits`);
an unreadable NTU-Fi or Widar3.0 file stops the build with its name, or with skip_bad is left out
and listed. Shapes default per source (`default_shape`). Parameters are stored in metadata.json,
normalisation statistics of the train split in stats.json
(DATA_DIR/csi_har/1.1.0/). TensorFlow is imported lazily (`builder_class()`).
"""
import functools
import os

import numpy as np

from msm_jax.data.csi import domains, intel5300, readers
from msm_jax.data.csi.recording import CsiFileError, csi_to_power
from msm_jax.data.csi.simulate import CLASS_SETS, CsiScenes
from msm_jax.data.radio_pretrain import SPLIT_IDS, prepare_builder, readable, write_train_stats
from msm_jax.data.tfds_pipeline import FEATURE, LABEL, import_tf

NAME = "csi_har"
SOURCES = ("simulator", "ntu_fi", "ut_har", "widar")
# (H, W, C) of each source when the user gives none: every subcarrier its card reports (NTU-Fi's
# 114 cropped to 112, divisible by 16-row patches; Intel 5300: 30), a width its recordings reach
# (NTU-Fi 2000 packets, UT-HAR 250, Widar3.0 gestures: seconds at 1 kHz), all 3 antennas.
DEFAULT_SHAPES = {"ntu_fi": (112, 496, 3), "ut_har": (30, 240, 3), "widar": (30, 496, 3)}
DEFAULT_SHAPE = DEFAULT_SHAPES["ntu_fi"]
_LAYOUT_SOURCES = {"atheros40": "ntu_fi", "intel20": "widar"}  # the simulator's cards
DOMAIN_FIELDS = domains.FIELDS + ("receiver",)
_VALIDATION_EVERY = 10


def build_params(*, shape, source: str = "simulator", num_examples: int = 600, seed: int = 0,
                 classes: str = "ntu_fi", layout: str = "atheros40", held_out: str = "subject=6,7",
                 num_eval_examples: int | None = None) -> dict:
  """The parameters defining a csi_har dataset (JSON-ready, as stored in metadata.json).

  source: 'simulator' or 'ntu_fi:PATH' / 'ut_har:PATH' / 'widar:PATH'. classes (a CLASS_SETS
  name or comma-separated activities), layout, held_out, num_examples and seed only apply to the
  simulator.
  """
  kind, _, path = source.partition(":")
  if kind not in SOURCES or (kind == "simulator") == bool(path):
    raise ValueError(f"csi_har source {source!r} must be 'simulator' or one of "
                     f"{[s + ':PATH' for s in SOURCES[1:]]}.")
  if len(shape) != 3 or min(shape) < 1:
    raise ValueError(f"csi_har needs a shape of 3 positive ints (H, W, C); got {shape}.")
  params = {"source": kind, "shape": [int(d) for d in shape]}
  if path:
    return dict(params, path=os.path.abspath(path))
  names = CLASS_SETS.get(classes) or tuple(c.strip() for c in classes.split(","))
  scenes = CsiScenes(names, layout, tuple(domains.parse_held_out(held_out).items()))
  if num_examples < 1 or seed < 0:
    raise ValueError(f"csi_har needs num_examples >= 1 and seed >= 0; got {num_examples}, {seed}.")
  return dict(params, classes=list(scenes.classes), layout=layout, held_out=held_out,
              num_examples=int(num_examples), seed=int(seed),
              num_eval_examples=int(num_eval_examples or max(1, num_examples // 10)))


def default_shape(source: str = "simulator", layout: str = "atheros40") -> tuple[int, int, int]:
  """The (H, W, C) that `source` (as in build_params) gives without one: DEFAULT_SHAPES of the
  source, or of the card `layout` the simulator imitates."""
  kind = source.partition(":")[0]
  if kind == "simulator":
    kind = _LAYOUT_SOURCES.get(layout, "ntu_fi")
  return DEFAULT_SHAPES.get(kind, DEFAULT_SHAPE)


def _example(power, label, fields=None) -> dict:
  fields = fields or {}
  return {FEATURE: power, LABEL: int(label),
          **{name: np.int32(fields.get(name, -1)) for name in DOMAIN_FIELDS}}


def _simulated(builder, split):
  params = builder.params
  scenes = CsiScenes(tuple(params["classes"]), params["layout"],
                     tuple(domains.parse_held_out(params["held_out"]).items()))
  count = params["num_examples"] if split == "train" else params["num_eval_examples"]
  for index in range(count):
    rng = np.random.default_rng([params["seed"], SPLIT_IDS[split], index])
    example = scenes(rng, tuple(params["shape"]), split)
    yield index, _example(example[FEATURE], example[LABEL], example["domain"])


def _reduce(path, amplitude, shape):
  try:
    return csi_to_power(amplitude, shape)
  except ValueError as error:
    raise CsiFileError(path, f"cannot make a {tuple(shape)} input: {error}") from None


def _ntu_fi_split(files, split) -> list:
  """The (path, label) of `split` among ntu_fi_files' {'train', 'test'} files."""
  if split == "test":
    return files["test"]
  return [f for i, f in enumerate(files["train"])
          if (i % _VALIDATION_EVERY == _VALIDATION_EVERY - 1) == (split == "validation")]


def _ntu_fi(builder, split):
  params = builder.params
  _, files = readers.ntu_fi_files(params["path"])

  def read(file):
    path, label = file
    return _example(_reduce(path, readers.read_ntu_fi(path).amplitude, params["shape"]), label)
  for (path, _), example in readable(builder, _ntu_fi_split(files, split), read, CsiFileError,
                                     params["path"], split, "file"):
    yield path, example


def _ut_har(builder, split):
  params = builder.params
  amplitude, labels = readers.ut_har_split(params["path"], split)
  path = os.path.join(params["path"], "data", f"X_{readers.UT_HAR_SPLITS[split]}.csv")
  for index, (recording, label) in enumerate(zip(amplitude, labels)):
    yield index, _example(_reduce(path, recording, params["shape"]), label)


def _widar_files(root):
  paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(root)
                 for name in names if name.endswith(".dat"))
  if not paths:
    raise CsiFileError(root, "holds no Widar3.0 .dat files.")
  for path in paths:
    if not intel5300.widar_fields(path):
      raise CsiFileError(path, "is not named userN-gesture-location-orientation-repetition-rX.dat.")
  return paths


def dataset_classes(params) -> tuple[str, ...]:
  """The class names of a csi_har dataset with these params, in label-id order."""
  if params["source"] == "simulator":
    return tuple(params["classes"])
  if params["source"] == "ntu_fi":
    return readers.ntu_fi_files(params["path"])[0]
  if params["source"] == "ut_har":
    return readers.UT_HAR_CLASSES
  gestures = sorted({intel5300.widar_fields(p)["gesture"] for p in _widar_files(params["path"])})
  return tuple(f"gesture_{g}" for g in gestures)


def widar_splits(paths) -> dict:
  """{path: split} of Widar3.0 files, by gesture instance (user, gesture, location, orientation,
  repetition): the files of an instance's receivers always share a split, so no instance is both
  trained on and evaluated. Sorted instance i goes to validation when i % 10 == 8, test when
  i % 10 == 9, else train."""
  instance = {path: tuple(intel5300.widar_fields(path)[f] for f in intel5300.WIDAR_INSTANCE)
              for path in paths}
  order = {key: i for i, key in enumerate(sorted(set(instance.values())))}
  parts = {_VALIDATION_EVERY - 2: "validation", _VALIDATION_EVERY - 1: "test"}
  return {path: parts.get(order[key] % _VALIDATION_EVERY, "train")
          for path, key in instance.items()}


def _widar(builder, split):
  params = builder.params
  classes = dataset_classes(params)

  def read(path):
    recording = intel5300.read_dat(path)
    info = recording.info
    fields = {"subject": info["user"], "position": info["location"],
              "orientation": info["orientation"], "receiver": info["receiver"]}
    label = classes.index(f"gesture_{info['gesture']}")
    return _example(_reduce(path, recording.amplitude, params["shape"]), label, fields)
  paths = [path for path, part in widar_splits(_widar_files(params["path"])).items()
           if part == split]
  yield from readable(builder, paths, read, CsiFileError, params["path"], split, "file")


_GENERATORS = {"simulator": _simulated, "ntu_fi": _ntu_fi, "ut_har": _ut_har, "widar": _widar}


def _ntu_fi_sizes(root) -> tuple[dict, str, str]:
  _, files = readers.ntu_fi_files(root)
  sizes = {split: len(_ntu_fi_split(files, split)) for split in SPLIT_IDS}
  return (sizes, f"{len(files['train'])} train_amp and {len(files['test'])} test_amp .mat files",
          f"at least {_VALIDATION_EVERY} train_amp files (every {_VALIDATION_EVERY}th validates) "
          "and 1 test_amp file")


def _widar_sizes(root) -> tuple[dict, str, str]:
  paths = _widar_files(root)
  parts = widar_splits(paths)
  sizes = {split: sum(part == split for part in parts.values()) for split in SPLIT_IDS}
  instances = {tuple(intel5300.widar_fields(p)[f] for f in intel5300.WIDAR_INSTANCE) for p in paths}
  return (sizes, f"{len(paths)} .dat files of {len(instances)} gesture instances",
          f"at least {_VALIDATION_EVERY} gesture instances (8 of every 10 train)")


def check_splits(params) -> None:
  """Refuses real files that would leave a split empty, which tfds only reports as 'No examples
  were yielded' once it has built the others. UT-HAR's three splits are files of their own."""
  count = {"ntu_fi": _ntu_fi_sizes, "widar": _widar_sizes}.get(params["source"])
  if not count:
    return
  sizes, files, needed = count(params["path"])
  empty = [split for split in SPLIT_IDS if not sizes[split]]
  if empty:
    given = ", ".join(f"{sizes[split]} {split}" for split in SPLIT_IDS)
    raise CsiFileError(params["path"], f"the {' and '.join(empty)} split would be empty: "
                                       f"{files} give {given}; {needed} are needed.")


@functools.cache
def builder_class():
  """The CsiHar builder class (registered with tfds as 'csi_har' on first call)."""
  _, tfds = import_tf()

  class CsiHar(tfds.core.GeneratorBasedBuilder):
    """WiFi CSI activity recognition examples, simulated or read from public-set files."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {
        "1.0.0": "CSI power (subcarriers, time, antennas), labels, domain fields.",
        "1.1.0": "'receiver' domain field; Widar3.0 split by gesture instance; simulator with "
                 "indoor delay spreads, Doppler-safe packet rates and realistic running."}
    code_path = None  # as in radio_pretrain: no checksums file, nothing is downloaded

    def __init__(self, *, params: dict, skip_bad: bool = False, **kwargs):
      # Before the base constructor, which already calls _info().
      self.params, self.skip_bad, self.skipped = params, skip_bad, []
      super().__init__(**kwargs)

    def _info(self):
      domain = {name: tfds.features.Scalar(dtype=np.int32) for name in DOMAIN_FIELDS}
      return self.dataset_info_from_configs(
          features=tfds.features.FeaturesDict({
              FEATURE: tfds.features.Tensor(shape=tuple(self.params["shape"]), dtype=np.float32,
                                            encoding=tfds.features.Encoding.BYTES),
              LABEL: tfds.features.ClassLabel(names=list(dataset_classes(self.params))),
              **domain}),
          metadata=tfds.core.MetadataDict(self.params))

    def _split_generators(self, dl_manager):
      del dl_manager  # nothing is downloaded
      return {split: self._generate_examples(split) for split in SPLIT_IDS}

    def _generate_examples(self, split):
      yield from _GENERATORS[self.params["source"]](self, split)

    def _post_download_and_prepare_hook(self):
      write_train_stats(self)

  return CsiHar


def build(data_dir: str, *, skip_bad: bool = False, **kwargs) -> tuple[str, list[str]]:
  """Builds csi_har under `data_dir` (keyword arguments as in `build_params`); returns (version
  directory, skipped-file errors). Same parameters reuse the dataset; different ones in the same
  data_dir are an error."""
  params = build_params(**kwargs)
  check_splits(params)
  builder = builder_class()(params=params, skip_bad=skip_bad, data_dir=data_dir)
  return prepare_builder(builder, params), builder.skipped

"""The CSI activity simulator: domain -> body motion -> multipath channel -> receiver -> amplitude.

`simulate_csi` gives one recording in the readers' layout (amplitude (antennas, subcarriers,
packets)); `render` is the physics core for an arbitrary scene (what the Doppler tests drive);
`CsiScenes` is the labelled scene model registered as the 'csi_har' generator.
"""
import dataclasses
import math

import numpy as np

from msm_jax.data.csi import channel, domains, hardware as hw, kinematics
from msm_jax.data.csi.layouts import ATHEROS40, Layout, get_layout
from msm_jax.data.csi.readers import UT_HAR_CLASSES
from msm_jax.data.csi.recording import CsiRecording, block_centres, block_slices, csi_to_power
from msm_jax.data.generators import SPLITS, Generator

NTU_FI_CLASSES = ("box", "circle", "clean", "fall", "run", "walk")
ALL_CLASSES = ("empty",) + tuple(sorted(set(NTU_FI_CLASSES + UT_HAR_CLASSES)))
CLASS_SETS = {"ntu_fi": NTU_FI_CLASSES, "ut_har": UT_HAR_CLASSES, "all": ALL_CLASSES}
# Largest rate of change |dL/dt| (m/s) of any body path of each activity in the rooms and
# positions of domains.py: the most measured over 400 random examples each, plus 10 % (running
# feet reach 16 m/s, ~310 Hz of Doppler at 5.8 GHz). Its Doppler bound is this / wavelength.
PATH_RATE_LIMIT = {"empty": 0.0, "box": 6.0, "circle": 3.0, "clean": 4.5, "fall": 11.0,
                   "run": 17.5, "walk": 8.0, "lie_down": 2.5, "pickup": 3.5, "sit_down": 2.0,
                   "stand_up": 2.0}
# Real CSI amplitude never reaches exactly 0: a quantised zero stands for "below one step".
_FLOOR = 0.5


def room_antennas(room: domains.Room, layout: Layout):
  """(tx (n_tx, 3), rx (n_rx, 3)) antenna positions of `room` for `layout`."""
  return (channel.antenna_array(room.tx, room.rx, layout.n_tx, layout.wavelength),
          channel.antenna_array(room.rx, room.tx, layout.n_rx, layout.wavelength))


def render(rng, points, rcs, room: domains.Room, layout: Layout, times, rate: float,
           subcarriers=None, hardware: hw.Hardware = hw.Hardware()) -> CsiRecording:
  """CSI of a scene: body scatterers at room-frame `points` (T, P, 3) at true packet `times` (T,),
  logged at `rate`; `subcarriers` indexes layout.subcarriers (default all). Returns amplitude
  (pairs, K, T) with info['csi'] the complex CSI in the same layout."""
  index = np.arange(len(layout.subcarriers)) if subcarriers is None else np.asarray(subcarriers)
  numbers = np.asarray(layout.subcarriers)[index]
  frequencies = layout.frequencies[index]
  tx, rx = room_antennas(room, layout)
  static = channel.frequency_response(*(a[None] for a in channel.static_paths(
      room, tx, rx, layout.wavelength)), frequencies)
  moving = channel.frequency_response(
      *channel.scatter_paths(points, rcs, tx, rx, layout.wavelength), frequencies)
  csi, step = hw.impair(rng, static + moving, numbers, rate, layout.bits, hardware)
  csi = csi.transpose(1, 2, 0)
  amplitude = np.abs(csi)
  if step:
    amplitude = np.maximum(amplitude, np.float32(_FLOOR * step))
  return CsiRecording(amplitude.astype(np.float32), {"csi": csi, "times": times})


def simulate_csi(rng: np.random.Generator, activity: str, *, domain: domains.Domain | None = None,
                 layout: Layout | str = ATHEROS40, n_packets: int | None = None,
                 packet_rate: float | None = None, subcarriers=None,
                 hardware: hw.Hardware = hw.Hardware()) -> CsiRecording:
  """One simulated recording of `activity` in `domain`: amplitude float32 (pairs, K, n_packets).

  Defaults follow the layout's public set (atheros40: NTU-Fi, 2000 packets at 500 Hz). A
  packet_rate below 2 * max_doppler((activity,), layout) aliases the fastest paths, as a real card
  at that rate would. info holds the activity, layout, domain fields and the complex CSI.
  """
  layout = get_layout(layout) if isinstance(layout, str) else layout
  domain = domain or domains.Domain()
  n_packets = n_packets or layout.n_packets
  rate = packet_rate or layout.packet_rate
  room, subject, position, orientation = domains.placement(rng, domain)
  times = hw.packet_times(rng, n_packets, rate, hardware)
  body, rcs = kinematics.body_motion(activity, times, subject, rng)
  points = kinematics.to_room(body, position, orientation)
  recording = render(rng, points, rcs, room, layout, times, rate, subcarriers, hardware)
  recording.info.update(activity=activity, layout=layout.name, **domain.as_dict())
  return recording


def max_doppler(activities, layout: Layout) -> float:
  """Largest Doppler (Hz) of any body path of `activities` in the simulator's domains."""
  return max(PATH_RATE_LIMIT[a] for a in activities) / layout.wavelength


@dataclasses.dataclass(frozen=True)
class CsiScenes:
  """Labelled scene model: example(rng, (H, W, C), split) -> {'spectrogram' (H subcarriers, W time
  steps, C antennas) block-averaged CSI power |H|^2 (csi_to_power), 'label', 'domain'}.

  The recording always spans the layout's public-set duration (4 s for atheros40). For an input
  smaller than the public recording only what the reduction keeps is simulated: one subcarrier
  per averaged block (its centre) and `n_packets(W)` packets, power then averaged to W as
  csi_to_power does; at full size it is exactly csi_to_power of a public-size recording.
  """
  classes: tuple[str, ...] = NTU_FI_CLASSES
  layout: str = ATHEROS40.name
  held_out: tuple[tuple[str, tuple[int, ...]], ...] = (("subject", (6, 7)),)
  hardware: hw.Hardware = hw.Hardware()

  def __post_init__(self):
    unknown = set(self.classes) - set(kinematics.ACTIVITIES)
    if unknown or not self.classes:
      raise ValueError(f"CSI classes {self.classes} include unknown activities {sorted(unknown)}; "
                       f"known: {sorted(kinematics.ACTIVITIES)}.")
    domains.check_held_out(dict(self.held_out))

  def n_packets(self, width: int) -> int:
    """Packets simulated for an input `width` steps wide: whole blocks of `width` at a rate of at
    least twice the classes' largest Doppler, so that nothing aliases before power is block-
    averaged; the card's own packets (layout.n_packets) where that rate is not lower than the
    card's. At the card's rate the simulation aliases exactly as the real card does: of the
    activities only running, whose feet reach ~310 Hz, exceeds atheros40's 250 Hz limit."""
    layout = get_layout(self.layout)
    duration = layout.n_packets / layout.packet_rate
    needed = max(1, math.ceil(2 * max_doppler(self.classes, layout) * duration))
    return min(width * math.ceil(needed / width), layout.n_packets)

  def __call__(self, rng, shape, split):
    if split not in SPLITS:
      raise ValueError(f"split {split!r} must be one of {SPLITS}.")
    height, width, channels = shape
    layout = get_layout(self.layout)
    n_sub = len(layout.subcarriers)
    block_slices(n_sub, height)  # raises for more subcarriers than the layout has
    subcarriers = block_centres(n_sub, height)
    n_packets = self.n_packets(width)
    if channels > layout.n_pairs:
      raise ValueError(f"csi_har: {channels} channels requested; the {layout.name} layout has "
                       f"{layout.n_pairs} antenna pairs.")
    label = int(rng.integers(len(self.classes)))
    domain = domains.sample_domain(rng, split, dict(self.held_out))
    duration = layout.n_packets / layout.packet_rate
    recording = simulate_csi(rng, self.classes[label], domain=domain, layout=layout,
                             n_packets=n_packets, packet_rate=n_packets / duration,
                             subcarriers=subcarriers, hardware=self.hardware)
    return {"spectrogram": csi_to_power(recording.amplitude, shape), "label": label,
            "domain": domain.as_dict()}


SCENES = CsiScenes()
GENERATOR = Generator(SCENES, label="class", classes=SCENES.classes)

"""Domains of the CSI simulator: rooms, subjects, positions and orientations, and held-out splits.

A domain is (room, subject, position, orientation), each an integer id:
  room         3 rooms of different sizes, transmitter/receiver placements and static multipath
               (walls by the image method, furniture, a diffuse tail): office, lab and hall with
               RMS delay spreads of about 13, 26 and 37 ns
  subject      8 people of 1.55-1.92 m height and 0.85-1.2x movement tempo
  position     5 spots per room, defined relative to the tx-rx link (near it, beside it, far)
  orientation  5 facing directions, 72 degrees apart
Each example jitters its domain slightly (position +-0.2 m, orientation +-10 deg, tempo +-5 %), as
repeated real recordings do. The person never blocks the line of sight (no shadowing model).

Held-out splits: `held_out` maps fields to ids, e.g. {'subject': (6, 7)} or parse_held_out(
'room=2;subject=6,7'). Train draws every held-out field from the other ids; validation and test
draw every held-out field from the held-out ids (an entirely unseen combination); fields not held
out are drawn from all ids in every split. With nothing held out all splits share one distribution.
"""
import dataclasses

import numpy as np

from msm_jax.data.csi.kinematics import Subject

FIELDS = ("room", "subject", "position", "orientation")


@dataclasses.dataclass(frozen=True)
class Room:
  """A room's static radio environment. Besides the walls (image method) and furniture it has a
  diffuse tail: weak multi-bounce paths whose mean power decays exponentially with excess delay
  (time constant `decay_ns`), as measured indoors, which sets most of the delay spread."""
  name: str
  size: tuple[float, float, float]  # x, y, z extent in metres, walls at 0 and size
  tx: tuple[float, float, float]
  rx: tuple[float, float, float]  # centre of the receive antenna array
  wall_reflection: float  # amplitude reflection coefficient of the walls, floor and ceiling
  seed: int  # seeds the furniture and the diffuse paths, which are fixed per room
  decay_ns: float  # time constant of the diffuse tail's exponential power-delay profile
  diffuse_db: float  # the diffuse tail's total power relative to the line of sight

  def furniture(self):
    """(points (F, 3), rcs (F,)) of the room's static scatterers: desks, shelves, cabinets."""
    rng = np.random.default_rng(self.seed)
    count = 10
    points = rng.uniform(0.1, 0.9, (count, 3)) * np.array(self.size) * [1, 1, 0.5]
    return points, rng.uniform(0.3, 2.0, count)

  def diffuse(self):
    """(excess delays s (D,), powers relative to the line of sight (D,), arrival and departure
    unit vectors (D, 3) each) of the diffuse paths: delays uniform over 6 decay times, mean power
    exponential in delay, each path's power Rayleigh-faded; directions uniform in azimuth within
    30 degrees of horizontal."""
    rng = np.random.default_rng([self.seed, 1])  # apart from the furniture's stream
    count = 48
    decay = self.decay_ns * 1e-9
    delays = rng.uniform(0.0, 6.0 * decay, count)
    powers = np.exp(-delays / decay) * rng.exponential(1.0, count)
    powers *= 10.0 ** (self.diffuse_db / 10.0) / powers.sum()
    azimuth = rng.uniform(0.0, 2 * np.pi, (2, count))
    elevation = rng.uniform(-np.pi / 6, np.pi / 6, (2, count))
    directions = np.stack([np.cos(elevation) * np.cos(azimuth),
                           np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=-1)
    return delays, powers, directions[0], directions[1]


ROOMS = (
    Room("office", (6.0, 5.0, 3.0), (0.5, 2.5, 1.0), (5.5, 2.5, 1.0), 0.45, 11, 30.0, -3.0),
    Room("lab", (8.0, 6.0, 3.0), (1.0, 1.0, 1.2), (6.0, 5.0, 1.2), 0.35, 12, 40.0, -2.0),
    Room("hall", (10.0, 8.0, 3.5), (2.0, 4.0, 0.8), (5.0, 4.0, 0.8), 0.3, 13, 60.0, -1.0),
)
SUBJECTS = tuple(Subject(h, t) for h, t in ((1.60, 1.0), (1.75, 0.9), (1.82, 1.1), (1.68, 1.2),
                                           (1.92, 0.95), (1.55, 1.05), (1.70, 0.85), (1.85, 1.15)))
# (fraction along the tx->rx link, metres to its left) of each position.
POSITIONS = ((0.5, 0.8), (0.5, -1.2), (0.3, 0.5), (0.7, 1.6), (0.5, 2.2))
ORIENTATIONS = tuple(np.deg2rad(72.0 * i) for i in range(5))
SIZES = {"room": len(ROOMS), "subject": len(SUBJECTS), "position": len(POSITIONS),
         "orientation": len(ORIENTATIONS)}


@dataclasses.dataclass(frozen=True)
class Domain:
  room: int = 0
  subject: int = 0
  position: int = 0
  orientation: int = 0

  def as_dict(self) -> dict:
    return dataclasses.asdict(self)


def parse_held_out(spec: str) -> dict:
  """'room=2;subject=6,7' -> {'room': (2,), 'subject': (6, 7)}; '' or 'none' -> {}."""
  held_out = {}
  for part in filter(None, (p.strip() for p in spec.split(";"))):
    if part == "none":
      continue
    field, _, ids = part.partition("=")
    held_out[field.strip()] = tuple(int(i) for i in ids.split(","))
  return check_held_out(held_out)


def check_held_out(held_out: dict) -> dict:
  for field, ids in held_out.items():
    if field not in SIZES:
      raise ValueError(f"held-out domain field {field!r} is unknown; known: {FIELDS}.")
    if not ids or not set(ids) < set(range(SIZES[field])):
      raise ValueError(f"held-out {field} ids {ids} must be a non-empty proper subset of "
                       f"0..{SIZES[field] - 1}, so that train and held-out splits both exist.")
  return {field: tuple(int(i) for i in ids) for field, ids in held_out.items()}


def sample_domain(rng: np.random.Generator, split: str, held_out: dict) -> Domain:
  """A domain for `split` under `held_out` (see the module doc)."""
  ids = {}
  for field in FIELDS:
    held = held_out.get(field, ())
    if not held:
      choices = range(SIZES[field])
    elif split == "train":
      choices = [i for i in range(SIZES[field]) if i not in held]
    else:
      choices = held
    ids[field] = int(rng.choice(list(choices)))
  return Domain(**ids)


def placement(rng: np.random.Generator, domain: Domain):
  """(room, subject, (x, y) position, orientation in radians) of an example, jittered."""
  room = ROOMS[domain.room]
  tx, rx = np.array(room.tx[:2]), np.array(room.rx[:2])
  link = rx - tx
  left = np.array([-link[1], link[0]]) / np.linalg.norm(link)
  along, side = POSITIONS[domain.position]
  position = tx + along * link + side * left + rng.uniform(-0.2, 0.2, 2)
  position = np.clip(position, 0.6, np.array(room.size[:2]) - 0.6)
  orientation = ORIENTATIONS[domain.orientation] + np.deg2rad(rng.uniform(-10, 10))
  subject = SUBJECTS[domain.subject]
  subject = Subject(subject.height, subject.tempo * rng.uniform(0.95, 1.05))
  return room, subject, position, orientation

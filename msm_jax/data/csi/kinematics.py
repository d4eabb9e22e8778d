"""Body-part scatterers and their motion for each activity (numpy, vectorised over time).

A person is 14 point scatterers (head, chest, belly, pelvis, shoulders, elbows, hands, knees, feet)
with radar cross-sections dominated by the torso. Each activity moves them with its own kinematics,
in a body frame (x forward, y left, z up, metres, feet on the floor), scaled by the subject's
height and tempo, with per-example random rates, amplitudes and phases:
  box        alternating punches, hands reach ~0.45 m forward at 1.2-2 punches/s
  circle     one hand draws a vertical circle of radius 0.2-0.35 m at 0.5-0.9 Hz
  clean      a hand wipes side to side over a table at 0.6-1.2 Hz, torso leaning
  fall       standing, then the whole body topples ~80 degrees about the feet in 0.4-0.8 s
  run        back and forth at 2-3.5 m/s, 1.3-1.6 Hz stride (2.6-3.2 steps/s), large limb
             swings: feet up to ~2x the body's speed, as in real running
  walk       back and forth at 1-1.5 m/s, ~1 Hz stride (~2 steps/s)
  lie_down   sits down, then the torso rotates back to horizontal (2-3 s)
  pickup     bends ~80 degrees at the hips, a hand reaches the floor and comes back (1.5-3 s)
  sit_down   the pelvis drops ~0.45 m and moves back, knees forward (1-2 s)
  stand_up   sit_down in reverse
  empty      nobody: no body scatterers at all
Walking and running turn around by reversing (the body keeps its heading); second-order
body-wall reflections are not modelled.
"""
import dataclasses

import numpy as np

POINTS = ("head", "chest", "belly", "pelvis", "shoulder_l", "shoulder_r", "elbow_l", "elbow_r",
          "hand_l", "hand_r", "knee_l", "knee_r", "foot_l", "foot_r")
_P = {name: i for i, name in enumerate(POINTS)}
# Standing pose of a 1.75 m person, and radar cross-sections (m^2) at 5 GHz.
STAND = np.array([[0, 0, 1.62], [0, 0, 1.35], [0, 0, 1.12], [0, 0, 0.95], [0, .19, 1.45],
                  [0, -.19, 1.45], [0, .22, 1.15], [0, -.22, 1.15], [0, .22, .85], [0, -.22, .85],
                  [0, .1, .5], [0, -.1, .5], [0, .1, .05], [0, -.1, .05]])
RCS = np.array([.06, .35, .35, .25, .04, .04, .03, .03, .02, .02, .05, .05, .03, .03])
REFERENCE_HEIGHT = 1.75
_UPPER = [_P[n] for n in ("head", "chest", "belly", "shoulder_l", "shoulder_r", "elbow_l",
                          "elbow_r", "hand_l", "hand_r")]


@dataclasses.dataclass(frozen=True)
class Subject:
  height: float = REFERENCE_HEIGHT  # metres
  tempo: float = 1.0  # scales every speed and rate of the subject's movements


def _smoothstep(x):
  x = np.clip(x, 0.0, 1.0)
  return x * x * (3.0 - 2.0 * x)


def _pitch(body, index, pivot, angle):
  """Rotates points `index` of body (T, P, 3) about the y axis through pivot (T, 3) by angle (T,):
  positive angles tip them forward (+x)."""
  rel = body[:, index] - pivot[:, None]
  c, s = np.cos(angle)[:, None], np.sin(angle)[:, None]
  x, z = rel[..., 0], rel[..., 2]
  body[:, index, 0] = pivot[:, None, 0] + c * x + s * z
  body[:, index, 2] = pivot[:, None, 2] - s * x + c * z


def _gait(body, t, rng, s, speed, rate, swing, bob):
  """Back-and-forth locomotion at `speed` over a 2-3 m line with a `rate` Hz stride cycle (two
  steps: the feet swing +-`swing` in antiphase, the body bobs once per step)."""
  length = rng.uniform(2.0, 3.0) * s
  cycle = (speed * t / (2 * length) + rng.uniform()) % 1.0
  body[..., 0] += (2 * length * np.abs(cycle - 0.5) - length / 2)[:, None]
  phase = 2 * np.pi * (rate * t + rng.uniform())
  leg = swing * s * np.sin(phase)
  for side, sign in (("l", 1.0), ("r", -1.0)):
    body[:, _P["foot_" + side], 0] += sign * leg
    body[:, _P["knee_" + side], 0] += sign * leg / 2
    body[:, _P["foot_" + side], 2] += 0.12 * s * np.maximum(0.0, sign * np.sin(phase))
    body[:, _P["hand_" + side], 0] -= sign * 0.7 * leg  # arms swing against the legs
    body[:, _P["elbow_" + side], 0] -= sign * 0.3 * leg
  body[..., 2] += (bob * s * np.cos(2 * phase))[:, None]


def _box(body, t, rng, s, tempo):
  rate = rng.uniform(1.2, 2.0) * tempo
  phase = np.pi * rate * t + rng.uniform(0, 2 * np.pi)
  for side, wave in (("l", np.sin(phase)), ("r", -np.sin(phase))):
    reach = 0.45 * s * np.maximum(0.0, wave) ** 2
    body[:, _P["hand_" + side]] += [0.15 * s, 0, 0.5 * s]  # guard up
    body[:, _P["elbow_" + side]] += [0.1 * s, 0, 0.2 * s]
    body[:, _P["hand_" + side], 0] += reach
    body[:, _P["elbow_" + side], 0] += reach / 2
  body[:, _P["chest"], 1] += 0.04 * s * np.sin(phase)
  body[..., 2] += 0.02 * s * np.sin(2 * phase)[:, None]


def _circle(body, t, rng, s, tempo):
  radius = rng.uniform(0.2, 0.35) * s
  angle = 2 * np.pi * (rng.uniform(0.5, 0.9) * tempo * t + rng.uniform()) * rng.choice([-1, 1])
  hand = np.stack([np.full_like(t, 0.45 * s), -0.2 * s + radius * np.cos(angle),
                   1.25 * s + radius * np.sin(angle)], axis=-1)
  body[:, _P["hand_r"]] = hand
  body[:, _P["elbow_r"]] = (hand + body[:, _P["shoulder_r"]]) / 2


def _clean(body, t, rng, s, tempo):
  _pitch(body, _UPPER, body[:, _P["pelvis"]], np.full_like(t, rng.uniform(0.2, 0.45)))
  sweep = rng.uniform(0.25, 0.4) * s * np.sin(2 * np.pi * (rng.uniform(0.6, 1.2) * tempo * t
                                                            + rng.uniform()))
  hand = np.stack([np.full_like(t, 0.5 * s), -0.15 * s + sweep, np.full_like(t, 0.85 * s)], -1)
  body[:, _P["hand_r"]] = hand
  body[:, _P["elbow_r"]] = (hand + body[:, _P["shoulder_r"]]) / 2


def _fall(body, t, rng, s, tempo):
  onset = rng.uniform(0.2, 0.5) * t[-1]
  progress = _smoothstep((t - onset) * tempo / rng.uniform(0.4, 0.8))
  heading = rng.choice([0.0, np.pi / 2, np.pi, -np.pi / 2])  # forward, sideways or backward
  feet = body[:, [_P["foot_l"], _P["foot_r"]]].mean(axis=1)
  c, sn = np.cos(heading), np.sin(heading)
  rotated = body.copy()
  rotated[..., :2] = body[..., :2] @ np.array([[c, sn], [-sn, c]])  # fall direction onto +x
  _pitch(rotated, list(range(len(POINTS))), feet, rng.uniform(1.3, 1.5) * progress)
  rotated[..., 2] = np.maximum(rotated[..., 2], 0.05)
  body[..., :2] = rotated[..., :2] @ np.array([[c, -sn], [sn, c]])
  body[..., 2] = rotated[..., 2]


def _sit(body, t, rng, s, tempo, reverse=False):
  onset = rng.uniform(0.1, 0.4) * t[-1]
  progress = _smoothstep((t - onset) * tempo / rng.uniform(1.0, 2.0))
  if reverse:
    progress = 1.0 - progress
  drop, back = 0.45 * s * progress, 0.25 * s * progress
  lean = 0.5 * np.sin(np.pi * progress)  # the torso leans forward mid-way
  body[:, :_P["knee_l"], 0] -= back[:, None]
  body[:, :_P["knee_l"], 2] -= drop[:, None]
  _pitch(body, _UPPER, body[:, _P["pelvis"]], lean)
  body[:, [_P["knee_l"], _P["knee_r"]], 0] += 0.25 * s * progress[:, None]
  body[:, [_P["knee_l"], _P["knee_r"]], 2] -= 0.05 * s * progress[:, None]


def _lie_down(body, t, rng, s, tempo):
  onset = rng.uniform(0.1, 0.3) * t[-1]
  duration = rng.uniform(2.0, 3.0) / tempo
  sit = _smoothstep((t - onset) / (duration / 2))
  recline = _smoothstep((t - onset - duration / 2) / (duration / 2))
  body[:, :_P["knee_l"], 2] -= (0.5 * s * sit)[:, None]
  _pitch(body, _UPPER, body[:, _P["pelvis"]], -1.45 * recline)
  body[:, [_P["knee_l"], _P["knee_r"]], 0] += 0.35 * s * sit[:, None]
  body[:, [_P["foot_l"], _P["foot_r"]], 0] += 0.8 * s * recline[:, None]
  body[..., 2] = np.maximum(body[..., 2], 0.05)


def _pickup(body, t, rng, s, tempo):
  onset = rng.uniform(0.1, 0.4) * t[-1]
  bend = np.sin(np.pi * np.clip((t - onset) * tempo / rng.uniform(1.5, 3.0), 0.0, 1.0))
  body[:, _P["hand_r"], 2] -= 0.1 * s * bend  # the arm hangs, then reaches to the floor
  _pitch(body, _UPPER, body[:, _P["pelvis"]], rng.uniform(1.2, 1.45) * bend)
  body[..., 2] = np.maximum(body[..., 2], 0.05)


def _walk(body, t, rng, s, tempo):
  _gait(body, t, rng, s, rng.uniform(1.0, 1.5) * tempo, rng.uniform(0.85, 1.15) * tempo, 0.3, 0.03)


def _run(body, t, rng, s, tempo):
  _gait(body, t, rng, s, rng.uniform(2.0, 3.5) * tempo, rng.uniform(1.3, 1.6) * tempo, 0.45, 0.06)


ACTIVITIES = {
    "empty": None, "box": _box, "circle": _circle, "clean": _clean, "fall": _fall, "run": _run,
    "walk": _walk, "lie_down": _lie_down, "pickup": _pickup, "sit_down": _sit,
    "stand_up": lambda *args: _sit(*args, reverse=True),
}


def body_motion(activity: str, t, subject: Subject, rng: np.random.Generator):
  """Scatterers of `activity` at times t (T,) seconds: (positions (T, P, 3) body frame, rcs (P,)).

  'empty' has P = 0. Small per-point jitter (1 cm) keeps even still poses slightly alive, as
  breathing and posture corrections are in real captures.
  """
  if activity not in ACTIVITIES:
    raise ValueError(f"activity {activity!r} is unknown; known: {sorted(ACTIVITIES)}.")
  t = np.asarray(t, np.float64)
  if ACTIVITIES[activity] is None:
    return np.zeros((len(t), 0, 3)), np.zeros(0)
  scale = subject.height / REFERENCE_HEIGHT
  body = np.repeat((STAND * scale)[None], len(t), axis=0)
  ACTIVITIES[activity](body, t, rng, scale, subject.tempo)
  breathing = 0.005 * np.sin(2 * np.pi * (0.25 * t + rng.uniform()))
  body[:, [_P["chest"], _P["belly"]], 0] += breathing[:, None]
  return body, RCS * scale ** 2


def to_room(body, position, orientation):
  """Body-frame points (..., 3) -> room frame: rotate by `orientation` (radians about z, 0 = facing
  +x) and put the body origin at `position` (x, y)."""
  c, s = np.cos(orientation), np.sin(orientation)
  room = body.copy()
  room[..., 0] = position[0] + c * body[..., 0] - s * body[..., 1]
  room[..., 1] = position[1] + s * body[..., 0] + c * body[..., 1]
  return room

"""CSI simulator physics, measured from its output: Doppler of a moving scatterer, no Doppler in a
static scene, separable activity signatures that degrade on unseen domains, each receiver
impairment, the intel20 layout, the generator's shapes, speed and determinism, and the shared
reduction csi_to_power."""
import dataclasses
import time

import numpy as np
import pytest

from msm_jax.data.csi import channel, csi_to_power, domains, hardware, kinematics, simulate
from msm_jax.data.csi.layouts import ATHEROS40, SPEED_OF_LIGHT, SUBCARRIER_SPACING, get_layout
from msm_jax.data.generators import check_example, get_generator

RATE = 500.0


def doppler_spectrum(amplitude, rate):
  """(frequencies, mean power spectrum over antennas and subcarriers) of the amplitude's changes."""
  fluctuation = amplitude - amplitude.mean(axis=-1, keepdims=True)
  power = (np.abs(np.fft.rfft(fluctuation, axis=-1)) ** 2).mean(axis=(0, 1))
  return np.fft.rfftfreq(amplitude.shape[-1], 1.0 / rate), power


def test_moving_scatterer_has_the_doppler_the_geometry_predicts():
  rng = np.random.default_rng(0)
  room = domains.Room("test", (20.0, 20.0, 3.0), (1.0, 10.0, 1.0), (1.0, 10.3, 1.0), 0.3, 5, 30.0,
                      -3.0)
  times = hardware.packet_times(rng, 1000, RATE, hardware.Hardware())
  speed = 1.5
  points = np.stack([4.0 + speed * times, np.full_like(times, 10.15), np.ones_like(times)], -1)
  recording = simulate.render(rng, points[:, None], np.array([1.0]), room, ATHEROS40, times, RATE)
  tx, rx = simulate.room_antennas(room, ATHEROS40)
  length = np.linalg.norm(points - tx[0], axis=-1) + np.linalg.norm(points - rx[1], axis=-1)
  predicted = ATHEROS40.carrier_hz / SPEED_OF_LIGHT * np.mean(np.gradient(length, times))
  assert predicted == pytest.approx(2 * speed / ATHEROS40.wavelength, rel=0.01)  # ~58 Hz
  freqs, power = doppler_spectrum(recording.amplitude, RATE)
  band = freqs > 5.0  # above AGC steps
  measured = freqs[band][np.argmax(power[band])]
  assert abs(measured - predicted) <= 1.0, (measured, predicted)
  assert power[band].max() > 10 * np.median(power[band])  # a clear line over the noise floor


@pytest.mark.parametrize("direction", [-1.0, 1.0])
def test_complex_csi_doppler_sign_approaching_positive_receding_negative(direction):
  # A scatterer on the far side of the link moving towards it (direction -1: its path shortens)
  # or away; the complex CSI's spectrum has one line at +-19.35 Hz per m/s of path change.
  rng = np.random.default_rng(2)
  room = domains.Room("test", (20.0, 20.0, 3.0), (1.0, 10.0, 1.0), (1.0, 10.3, 1.0), 0.3, 5, 30.0,
                      -3.0)
  times = np.arange(1000) / RATE
  speed = 1.2
  points = np.stack([6.0 + direction * speed * times, np.full_like(times, 10.15),
                     np.ones_like(times)], -1)
  csi = simulate.render(rng, points[:, None], np.array([1.0]), room, ATHEROS40, times, RATE,
                        hardware=hardware.IDEAL).info["csi"]
  tx, rx = simulate.room_antennas(room, ATHEROS40)
  path_rate = np.mean(np.gradient(np.linalg.norm(points - tx[0], axis=-1)
                                  + np.linalg.norm(points - rx[0], axis=-1), times))
  assert np.sign(path_rate) == direction and abs(path_rate) == pytest.approx(2 * speed, rel=0.01)
  hz_per_metre_per_s = ATHEROS40.carrier_hz / SPEED_OF_LIGHT
  assert hz_per_metre_per_s == pytest.approx(19.35, abs=0.01)
  moving = csi - csi.mean(axis=-1, keepdims=True)  # the static paths are the time mean
  power = (np.abs(np.fft.fft(moving, axis=-1)) ** 2).mean(axis=(0, 1))
  freqs = np.fft.fftfreq(len(times), 1.0 / RATE)
  peak = freqs[np.argmax(power)]
  assert peak == pytest.approx(-hz_per_metre_per_s * path_rate, abs=0.5)  # -46.4 Hz * direction
  mirror = np.argmin(np.abs(freqs + peak))
  assert power.max() > 1e3 * power[mirror - 2:mirror + 3].max()  # nothing at the opposite sign


def test_static_scene_has_no_doppler_energy():
  rng = np.random.default_rng(1)
  ideal = simulate.simulate_csi(rng, "empty", hardware=hardware.IDEAL).amplitude
  assert ideal.min() > 0
  assert np.max(np.ptp(ideal, axis=-1) / ideal.min(axis=-1)) < 1e-6  # float32 rounding only
  # With receiver noise (AGC steps off: they are gain, not motion) an empty room's amplitude
  # spectrum is the flat noise floor: Doppler band (5-60 Hz) / high band (> 200 Hz) ~ 1.
  noisy = hardware.Hardware(agc_steps_per_s=0.0)
  ratio = {}
  for activity, seed in (("empty", 0), ("empty", 1), ("walk", 0), ("walk", 1)):
    amplitude = simulate.simulate_csi(np.random.default_rng(seed), activity,
                                      hardware=noisy).amplitude
    freqs, power = doppler_spectrum(amplitude, ATHEROS40.packet_rate)
    ratio[activity, seed] = power[(freqs > 5) & (freqs < 60)].mean() / power[freqs > 200].mean()
  assert ratio["empty", 0] < 1.3 and ratio["empty", 1] < 1.3, ratio  # measured 1.17, 1.12
  assert ratio["walk", 0] > 2 and ratio["walk", 1] > 2, ratio  # measured 3.0, 4.4


def delay_spread(room):
  """Power-weighted RMS delay (s) of the room's static paths, per antenna pair."""
  tx, rx = simulate.room_antennas(room, ATHEROS40)
  lengths, amplitudes = channel.static_paths(room, tx, rx, ATHEROS40.wavelength)
  delay, power = lengths / SPEED_OF_LIGHT, amplitudes ** 2
  mean = (power * delay).sum(0) / power.sum(0)
  return np.sqrt((power * (delay - mean) ** 2).sum(0) / power.sum(0))


@pytest.mark.parametrize("room_id", range(len(domains.ROOMS)))
def test_static_multipath_has_indoor_delay_spread_and_frequency_selective_fading(room_id):
  room = domains.ROOMS[room_id]
  spread = delay_spread(room)
  assert np.all((8e-9 < spread) & (spread < 60e-9)), spread  # measured 13, 26, 37 ns
  slower = delay_spread(dataclasses.replace(room, decay_ns=2 * room.decay_ns))
  assert np.all(slower > 1.7 * spread)  # the diffuse tail's decay sets most of it (measured 2.0x)
  # Delay spreads of tens of ns fade the 40 MHz band: its amplitude varies by several dB.
  recording = simulate.simulate_csi(np.random.default_rng(0), "empty",
                                    domain=domains.Domain(room=room_id), hardware=hardware.IDEAL)
  level_db = 20 * np.log10(recording.amplitude[..., 0])
  assert np.ptp(level_db, axis=1).min() > 5.0, np.ptp(level_db, axis=1)  # measured 6.8-20 dB


def doppler_feature(power):
  """Log band powers of the time spectrum (shape and level) and the sorted motion-energy profile."""
  x = np.log(power)
  x = x - x.mean(axis=1, keepdims=True)
  spectrum = (np.abs(np.fft.rfft(x, axis=1)) ** 2).mean(axis=(0, 2))
  bands = np.log(np.add.reduceat(spectrum, np.unique(np.geomspace(1, 128, 12).astype(int)))[:-1])
  energy = (np.diff(x, axis=1) ** 2).mean(axis=(0, 2))
  profile = np.log(np.sort(energy[:240].reshape(8, -1).mean(axis=1)))
  return np.concatenate([bands - bands.max(), [bands.max()], profile - profile.max(),
                         [profile.max() - profile.min()]])


def features(scenes, split, count, seed):
  examples = [scenes(np.random.default_rng([seed, i]), (16, 256, 3), split) for i in range(count)]
  return (np.stack([doppler_feature(e["spectrogram"]) for e in examples]),
          np.array([e["label"] for e in examples]))


def nearest_centroid(train, labels, n_classes):
  """A classifier of standardised features by the nearest class mean: x (N, F) -> labels (N,)."""
  mean, std = train.mean(0), train.std(0) + 1e-9  # one band is always the 0 maximum
  centroids = np.stack([((train - mean) / std)[labels == c].mean(0) for c in range(n_classes)])
  return lambda x: ((((x - mean) / std)[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)


def test_activities_separate_and_the_classifier_drops_on_unseen_domains():
  scenes = simulate.CsiScenes(held_out=(("position", (3, 4)), ("orientation", (3, 4))))
  classify = nearest_centroid(*features(scenes, "train", 240, 0), 6)
  seen, seen_labels = features(scenes, "train", 120, 1)  # new examples of the training domains
  unseen, unseen_labels = features(scenes, "test", 120, 2)
  in_domain = np.mean(classify(seen) == seen_labels)
  out_of_domain = np.mean(classify(unseen) == unseen_labels)
  chance = 1 / 6
  assert in_domain > 3 * chance, in_domain  # measured 0.60
  assert out_of_domain < in_domain - 0.1, (in_domain, out_of_domain)  # measured 0.45


def test_ut_har_activities_and_the_empty_room_separate():
  # UT-HAR's seven activities and nobody at all, on its Intel 5300 card (intel20, 1 s at 1 kHz).
  scenes = simulate.CsiScenes(simulate.UT_HAR_CLASSES + ("empty",), layout="intel20",
                              held_out=())
  classify = nearest_centroid(*features(scenes, "train", 200, 0), 8)
  x, labels = features(scenes, "train", 160, 1)
  predicted = classify(x)
  assert np.mean(predicted == labels) > 3 / 8, np.mean(predicted == labels)  # measured 0.48
  empty = labels == 7
  assert np.mean(predicted[empty] == 7) > 0.8  # measured 0.93
  assert np.mean(predicted[~empty] == 7) < 0.1  # measured 0.04: a person is seen


def test_path_rate_limits_bound_every_activity_in_the_simulators_domains():
  assert simulate.PATH_RATE_LIMIT.keys() == kinematics.ACTIVITIES.keys()
  times = np.arange(4000) / 1000.0
  for activity, limit in simulate.PATH_RATE_LIMIT.items():
    fastest = 0.0
    for seed in range(20):
      rng = np.random.default_rng([seed, 3])
      room, subject, position, orientation = domains.placement(
          rng, domains.sample_domain(rng, "train", {}))
      body, _ = kinematics.body_motion(activity, times, subject, rng)
      points = kinematics.to_room(body, position, orientation)
      tx, rx = simulate.room_antennas(room, ATHEROS40)
      lengths = channel.pair_lengths(points, tx, rx)[0]
      fastest = max(fastest, np.abs(np.diff(lengths, axis=0)).max(initial=0.0) * 1000.0)
    assert fastest <= limit, (activity, fastest, limit)


def beyond(activity, frequency, seed):
  """Fraction of the body paths' Doppler energy (complex CSI, static part removed) above
  `frequency` Hz, from 4 s sampled at 4 kHz with ideal hardware."""
  rng = np.random.default_rng(seed)
  csi = simulate.simulate_csi(rng, activity, domain=domains.sample_domain(rng, "train", {}),
                              n_packets=16000, packet_rate=4000.0, subcarriers=[0, 57, 113],
                              hardware=hardware.IDEAL).info["csi"]
  power = (np.abs(np.fft.fft(csi - csi.mean(axis=-1, keepdims=True), axis=-1)) ** 2).sum((0, 1))
  return power[np.abs(np.fft.fftfreq(16000, 1 / 4000.0)) > frequency].sum() / power.sum()


def test_small_inputs_are_simulated_without_doppler_aliasing():
  duration = ATHEROS40.n_packets / ATHEROS40.packet_rate
  scenes = simulate.CsiScenes()  # NTU-Fi's six, running among them
  assert simulate.max_doppler(scenes.classes, ATHEROS40) == pytest.approx(338, abs=1)
  assert scenes.n_packets(64) == ATHEROS40.n_packets  # 2 x 338 Hz > 500 Hz: the card's own rate
  slow = simulate.CsiScenes(("sit_down", "stand_up", "walk"))
  rate = slow.n_packets(64) / duration
  assert 2 * simulate.max_doppler(slow.classes, ATHEROS40) <= rate < ATHEROS40.packet_rate
  # Measured: what lies beyond those Nyquist limits is the spectral floor, while the 256 Hz
  # packet rate used before would have folded running's 128-250 Hz over.
  for seed in (0, 1):
    assert beyond("walk", rate / 2, seed) < 1e-3
    assert beyond("run", ATHEROS40.packet_rate / 2, seed) < 1e-3
    assert beyond("run", 128.0, seed) > 5 * beyond("run", ATHEROS40.packet_rate / 2, seed)


def test_held_out_domains_split_as_documented():
  held_out = domains.parse_held_out("room=2;subject=6,7")
  assert held_out == {"room": (2,), "subject": (6, 7)}
  rng = np.random.default_rng(0)
  train = [domains.sample_domain(rng, "train", held_out) for _ in range(200)]
  test = [domains.sample_domain(rng, "test", held_out) for _ in range(200)]
  assert all(d.room != 2 and d.subject not in (6, 7) for d in train)
  assert all(d.room == 2 and d.subject in (6, 7) for d in test)
  assert {d.position for d in test} == set(range(len(domains.POSITIONS)))
  with pytest.raises(ValueError, match="proper subset"):
    domains.parse_held_out("room=0,1,2")
  with pytest.raises(ValueError, match="'floor' is unknown"):
    domains.parse_held_out("floor=1")


@pytest.mark.parametrize("shape", [(32, 64, 3), (112, 496, 3), (16, 16, 1), (114, 2000, 3)])
def test_registered_generator_shapes_floor_and_determinism(shape):
  generator = get_generator("csi_har")
  assert generator.label == "class" and generator.classes == simulate.NTU_FI_CLASSES
  example = check_example(generator(np.random.default_rng(5), shape, "validation"), generator,
                          shape, "csi_har")
  assert example["spectrogram"].min() > 0  # never zero power: the log-power floor stays unused
  assert example["domain"]["subject"] in (6, 7)  # validation holds out subjects 6 and 7
  again = generator(np.random.default_rng(5), shape, "validation")
  np.testing.assert_array_equal(example["spectrogram"], again["spectrogram"])


def test_generator_is_fast_at_small_sizes_and_rejects_impossible_ones():
  generator = get_generator("csi_har")
  rng = np.random.default_rng(0)
  generator(rng, (32, 64, 3), "train")
  start = time.perf_counter()
  for _ in range(20):
    generator(rng, (32, 64, 3), "train")
  # Measured 37-46 ms on the 2 shared cores (2,000 packets, 32 subcarriers); the bound catches
  # order-of-magnitude slips such as simulating every subcarrier.
  assert (time.perf_counter() - start) / 20 < 0.1
  with pytest.raises(ValueError, match="cannot reduce 114 samples to 128"):
    generator(rng, (128, 64, 3), "train")
  with pytest.raises(ValueError, match="4 channels requested; the atheros40 layout has 3"):
    generator(rng, (32, 64, 4), "train")


def test_csi_to_power_crops_and_block_averages_power():
  amplitude = np.random.default_rng(0).uniform(1, 2, (3, 114, 2000)).astype(np.float32)
  power = csi_to_power(amplitude, (32, 64, 2))
  assert power.shape == (32, 64, 2) and power.dtype == np.float32
  # 114 -> 32: centred 96 subcarriers (9..104) in blocks of 3; 2000 -> 64: centred 1984 in 31s.
  expected = np.mean(amplitude[1, 9 + 3 * 5:9 + 3 * 6, 8 + 31 * 7:8 + 31 * 8] ** 2)
  assert power[5, 7, 1] == pytest.approx(expected, rel=1e-5)
  np.testing.assert_array_equal(csi_to_power(amplitude, (114, 2000, 3)),
                                (amplitude ** 2).transpose(1, 2, 0))
  with pytest.raises(ValueError, match="4 channels requested from CSI with 3 antennas"):
    csi_to_power(amplitude, (32, 64, 4))


def impaired(receiver: hardware.Hardware, varying=False, n_time=2000, seed=0):
  """(clean channel (T, 3, 114), logged CSI, quantisation step) of a random channel, the same for
  every packet or new in each, through `receiver`."""
  rng = np.random.default_rng(seed)
  shape = (n_time if varying else 1, 3, len(ATHEROS40.subcarriers))
  clean = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
  clean = np.repeat(clean, n_time // len(clean), axis=0)
  csi, step = hardware.impair(rng, clean, ATHEROS40.subcarriers, RATE, ATHEROS40.bits, receiver)
  return clean, csi, step


def test_timing_offset_is_a_phase_slope_over_subcarriers_common_to_antennas():
  clean, csi, _ = impaired(dataclasses.replace(hardware.IDEAL, timing_offset_s=50e-9))
  np.testing.assert_allclose(np.abs(csi / clean), np.abs(csi / clean)[0, 0, 0], rtol=1e-4)
  phase = np.unwrap(np.angle(csi / clean), axis=-1).reshape(-1, len(ATHEROS40.subcarriers))
  slope, intercept = np.polyfit(ATHEROS40.subcarriers, phase.T, 1)
  offset = (-slope / (2 * np.pi * SUBCARRIER_SPACING)).reshape(-1, 3)
  assert np.ptp(offset, axis=1).max() < 1e-12  # one offset per packet, for every antenna
  assert np.std(offset) == pytest.approx(50e-9, rel=0.1) and abs(np.mean(offset)) < 5e-9
  np.testing.assert_allclose(np.angle(np.exp(1j * intercept)), 0.0, atol=1e-3)  # no common phase


def test_random_common_phase_is_uniform_per_packet_even_without_timing_offset():
  clean, csi, _ = impaired(dataclasses.replace(hardware.IDEAL, random_phase=True))
  ratio = csi / clean
  common = np.angle(ratio[:, 0, 0])
  residual = np.angle(ratio * np.exp(-1j * common)[:, None, None])
  assert np.abs(residual).max() < 1e-4  # the same phase on every antenna and subcarrier
  counts, _ = np.histogram(common, bins=8, range=(-np.pi, np.pi))
  assert counts.min() > 180 and counts.max() < 320, counts  # uniform: 250 per bin
  assert abs(np.mean(np.exp(1j * np.diff(common)))) < 0.1  # independent packet to packet


def test_agc_steps_are_gain_jumps_common_to_antennas_and_subcarriers():
  clean, csi, _ = impaired(dataclasses.replace(hardware.IDEAL, agc_steps_per_s=5.0))
  gain_db = 20 * np.log10(np.abs(csi / clean))
  assert np.ptp(gain_db, axis=(1, 2)).max() < 1e-3
  steps = np.diff(gain_db[:, 0, 0])
  jumps = steps[np.abs(steps) > 1e-3]
  assert 10 <= len(jumps) <= 32, len(jumps)  # Poisson with mean 5 / s x 4 s = 20
  assert np.abs(jumps).max() <= hardware.Hardware().agc_step_db + 1e-3


def test_quantisation_rounds_to_integer_steps_with_rms_at_an_eighth_of_full_scale():
  _, csi, step = impaired(dataclasses.replace(hardware.IDEAL, quantise=True), varying=True)
  levels = np.concatenate([csi.real.ravel(), csi.imag.ravel()]) / step
  np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
  full_scale = 2 ** (ATHEROS40.bits - 1) - 1
  assert np.abs(levels).max() <= full_scale and len(np.unique(np.round(levels))) > 300
  assert np.sqrt(np.mean(np.abs(csi) ** 2)) / step == pytest.approx((full_scale + 1) / 8, rel=0.01)


def test_dropped_packets_repeat_the_previous_one_and_jitter_stays_within_the_interval():
  clean, csi, _ = impaired(dataclasses.replace(hardware.IDEAL, drop_rate=(0.2, 0.2)), varying=True)
  repeated = np.all(csi[1:] == csi[:-1], axis=(1, 2))
  assert repeated.mean() == pytest.approx(0.2, abs=0.03)
  kept = np.r_[True, ~repeated]
  np.testing.assert_allclose(np.abs(csi[kept] / clean[kept]), np.abs(csi / clean)[0, 0, 0],
                             rtol=1e-4)  # a kept packet is its own channel
  times = hardware.packet_times(np.random.default_rng(0), 20_000, RATE, hardware.Hardware())
  deviation = times * RATE - np.arange(20_000)
  assert np.std(deviation) == pytest.approx(hardware.Hardware().jitter, rel=0.05)
  assert np.abs(deviation).max() <= 0.45 and np.all(np.diff(times) > 0)


def test_noise_is_unit_power_at_the_drawn_snr():
  clean, csi, _ = impaired(dataclasses.replace(hardware.IDEAL, snr_db=(20.0, 20.0)))
  gain = np.vdot(clean, csi) / np.vdot(clean, clean)
  noise = csi - gain * clean
  assert np.mean(np.abs(noise) ** 2) == pytest.approx(1.0, rel=0.01)
  # Circularly symmetric Gaussian: independent real and imaginary parts of variance 1/2 each,
  # with a Gaussian's kurtosis of 3.
  assert np.var(noise.real) == pytest.approx(0.5, rel=0.01)
  assert abs(np.mean(noise.real * noise.imag)) < 0.01
  assert np.mean(noise.real ** 4) / np.var(noise.real) ** 2 == pytest.approx(3.0, abs=0.05)
  snr_db = 10 * np.log10(np.mean(np.abs(gain * clean) ** 2) / np.mean(np.abs(noise) ** 2))
  assert snr_db == pytest.approx(20.0, abs=0.05)


def test_intel20_layout_simulates_the_intel5300_subcarriers():
  layout = get_layout("intel20")
  intel5300 = list(range(-28, 0, 2)) + [-1] + list(range(1, 28, 2)) + [28]
  assert list(layout.subcarriers) == intel5300 and len(intel5300) == 30
  recording = simulate.simulate_csi(np.random.default_rng(0), "empty", layout=layout,
                                    hardware=hardware.IDEAL)
  assert recording.amplitude.shape == (3, 30, 1000) and recording.info["layout"] == "intel20"
  # The static channel is the multipath sum at exactly f_c + k * 312.5 kHz of those k.
  room = domains.ROOMS[0]
  tx, rx = simulate.room_antennas(room, layout)
  expected = channel.frequency_response(
      *(a[None] for a in channel.static_paths(room, tx, rx, layout.wavelength)),
      layout.carrier_hz + SUBCARRIER_SPACING * np.array(intel5300))[0]
  ratio = recording.info["csi"][..., 0] / expected
  np.testing.assert_allclose(ratio, ratio[0, 0], rtol=1e-4)
  scenes = simulate.CsiScenes(simulate.UT_HAR_CLASSES, layout="intel20")
  example = scenes(np.random.default_rng(1), (30, 250, 3), "train")
  assert example["spectrogram"].shape == (30, 250, 3) and example["spectrogram"].min() > 0

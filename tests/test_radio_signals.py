"""Radio scenes: numerology measured from generated IQ, STFT, labels, SNR, determinism."""
import os
import subprocess
import sys

import numpy as np
import pytest

from msm_jax.data import generators
from msm_jax.data.radio import numerology as nm
from msm_jax.data.radio import stft as st
from msm_jax.data.radio.lte import lte_signal
from msm_jax.data.radio.nr import nr_signal
from msm_jax.data.radio.scene import SceneConfig, render

FS = 30.72e6
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def spectrum(iq, n_fft=2048):
  """Time-averaged power per 15 kHz bin (at 30.72 Msps), centred, from the shared STFT."""
  spec = st.StftSpec(n_fft=n_fft, hop=n_fft // 2, n_time=1, n_freq=n_fft)
  x = st.stft(iq, spec)
  return (np.abs(x) ** 2).mean(axis=0)


def occupied_hz(iq, sample_rate):
  psd = spectrum(iq)
  inside = psd > 0.5 * np.median(psd[psd > 0.1 * psd.max()])
  return (np.flatnonzero(inside)[-1] - np.flatnonzero(inside)[0] + 1) * sample_rate / len(psd)


def lte(rng, n=FS * 0.01, **kwargs):
  args = dict(bandwidth_mhz=20, offset_subcarriers=0, snr_db=20.0, cell_id=7, load=1.0)
  return lte_signal(rng, int(n), FS, **{**args, **kwargs})


def nr(rng, n=FS * 0.01, sample_rate=FS, **kwargs):
  args = dict(scs_khz=30, bandwidth_mhz=20, offset_subcarriers=0, snr_db=20.0, load=1.0)
  return nr_signal(rng, int(n), sample_rate, **{**args, **kwargs})


def test_data_and_radio_modules_import_without_tensorflow():
  code = ("import sys, msm_jax.data.radio.generators, msm_jax.data.radio.recordings, "
          "msm_jax.data.radio.mathworks, msm_jax.data.parallel, msm_jax.data.radio_segmentation\n"
          "import numpy as np\n"
          "msm_jax.data.generators.get_generator('lte_nr')(np.random.default_rng(0), (8, 8, 1))\n"
          "print(sorted(m for m in sys.modules if m.startswith('tensorflow')))")
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
  assert result.stdout.strip() == "[]"


def test_occupied_bandwidths_match_the_rb_tables():
  rng = np.random.default_rng(0)
  # LTE 20 MHz: 100 RBs x 12 x 15 kHz (+ the empty DC subcarrier) = 18.015 MHz.
  assert occupied_hz(lte(rng), FS) == pytest.approx(18.015e6, abs=2 * 15e3)
  # NR 30 kHz, 51 RBs (20 MHz): 612 x 30 kHz = 18.36 MHz.
  assert occupied_hz(nr(rng), FS) == pytest.approx(18.36e6, abs=2 * 15e3)
  # Placement: an offset of 100 subcarriers moves the band by 1.5 MHz.
  psd = spectrum(lte(rng, bandwidth_mhz=5, offset_subcarriers=100))
  centre = np.average(np.arange(len(psd)) - len(psd) // 2, weights=psd) * 15e3
  assert centre == pytest.approx(1.5e6, abs=30e3)


@pytest.mark.parametrize("cell_id", [0, 7, 11])
def test_crs_comb_in_lte_not_in_nr(cell_id):
  rng = np.random.default_rng(cell_id)
  # No data: what is left of LTE is control, sync and the CRS on every 3rd subcarrier (symbols 0
  # and 4 of every slot, shifts v and v + 3 of cell_id mod 6), across the whole band.
  psd = spectrum(lte(rng, load=0.0, cell_id=cell_id, n=FS * 0.02))
  k = np.arange(-594, -40)  # lower band edge .. outside the central sync / PBCH subcarriers
  band = psd[len(psd) // 2 + k]
  phases = [band[k % 3 == p].mean() / band[k % 3 != p].mean() for p in (0, 1, 2)]
  # The control region (full band) and frames straddling symbols dilute the comb, but its phase
  # is the cell's shift.
  assert np.argmax(phases) == cell_id % 3 and phases[cell_id % 3] > 1.1
  nr_psd = spectrum(nr(rng, scs_khz=15, bandwidth_mhz=20, load=0.3, n=FS * 0.02))
  nr_band = nr_psd[len(nr_psd) // 2 + k]
  nr_phases = [nr_band[k % 3 == p].mean() / nr_band[k % 3 != p].mean() for p in (0, 1, 2)]
  assert max(nr_phases) < 1.03  # no always-on comb


@pytest.mark.parametrize("period_ms", [10, 20])
def test_ssb_burst_period(period_ms):
  rng = np.random.default_rng(period_ms)
  iq = nr(rng, n=FS * 0.065, load=0.0, ssb_period_ms=period_ms)
  # An idle cell sends only its SS/PBCH bursts: the non-empty 0.5 ms bins.
  envelope = (np.abs(iq[:len(iq) // 15360 * 15360]) ** 2).reshape(-1, 15360).mean(axis=1)
  loud = np.flatnonzero(envelope > 1e-3 * envelope.max())
  starts = loud[np.concatenate([[True], np.diff(loud) > 2])] * 0.5
  assert len(starts) >= 3
  np.testing.assert_allclose(np.diff(starts), period_ms, atol=0.5)


@pytest.mark.parametrize("signal,sample_rate,expected", [
    ("lte", FS, {160: 1, 144: 6}),  # FFT 2048: CP 160 then 6 x 144 per 0.5 ms slot
    ("nr", 2 * FS, {176: 1, 144: 13}),  # 30 kHz, FFT 2048: 14 symbols per 0.5 ms
])
def test_cyclic_prefix_lengths(signal, sample_rate, expected):
  rng = np.random.default_rng(1)
  if signal == "lte":
    iq, n_fft = lte(rng, n=sample_rate * 0.003), 2048
  else:
    iq, n_fft = nr(rng, n=sample_rate * 0.003, sample_rate=sample_rate, tdd=None), 2048
  # A cyclic prefix repeats the last samples of its symbol: runs where x[n] == x[n + n_fft].
  same = np.abs(iq[:-n_fft] - iq[n_fft:]) < 1e-6 * np.abs(iq).max()
  edges = np.flatnonzero(np.diff(np.concatenate([[0], same.astype(int), [0]])))
  runs = (edges[1::2] - edges[::2])[1:-1]  # the first and last runs may be cut by the capture
  lengths, counts = np.unique(runs[runs > 16], return_counts=True)
  assert set(lengths) == set(expected)
  ratio = dict(zip(lengths, counts))
  (big, n_big), (small, n_small) = sorted(expected.items(), reverse=True)
  assert ratio[small] / ratio[big] == pytest.approx(n_small / n_big, rel=0.25)


def test_numerology_rejects_capture_rates_that_do_not_fit():
  assert nm.fft_size(61.44e6, 15e3) == 4096
  with pytest.raises(ValueError, match="7.68 Msps"):
    nm.fft_size(50e6, 15e3)


CONFIG = SceneConfig(sample_rate=FS, frame_seconds=0.005, doppler_hz=(0, 0))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_snr_calibration_in_band(snr_db):
  rng = np.random.default_rng(2)
  iq = lte(rng, n=CONFIG.n_samples, snr_db=snr_db, bandwidth_mhz=10)
  power, _ = render(rng, [("lte", iq)], (16, 256, 1), CONFIG)
  bins = np.abs(np.arange(256) - 128)  # 120 kHz each; the 9 MHz band spans |bins| < 37.5
  inside, outside = (bins > 2) & (bins < 30), bins > 50
  measured = 10 * np.log10(power[:, inside].mean() - power[:, outside].mean())
  assert measured == pytest.approx(snr_db, abs=0.5)
  assert power[:, outside].mean() == pytest.approx(1.0, abs=0.05)  # unit noise floor


def test_labels_follow_component_energy():
  rng = np.random.default_rng(3)
  strong = lte(rng, n=CONFIG.n_samples, bandwidth_mhz=5, offset_subcarriers=-400, snr_db=20.0)
  weak = nr(rng, n=CONFIG.n_samples, bandwidth_mhz=10, scs_khz=15, offset_subcarriers=-300,
            snr_db=3.0, tdd="DDDSU")
  classes = ("noise", "lte", "nr")
  power, labels = render(rng, [("lte", strong), ("nr", weak)], (32, 128, 2), CONFIG, classes)
  assert power.shape == (32, 128, 2) and labels.shape == (32, 128) and labels.dtype == np.uint8
  assert not np.array_equal(power[..., 0], power[..., 1])  # independent noise per channel
  mean = power.mean(axis=-1)
  assert set(np.unique(labels)) == {0, 1, 2}
  assert mean[labels == 1].mean() > 30 * mean[labels == 0].mean()
  assert mean[labels == 2].mean() > 1.5 * mean[labels == 0].mean()
  assert mean[labels == 0].mean() == pytest.approx(1.0, abs=0.1)
  # Where the strong LTE overlaps the NR band, LTE wins; the NR's empty uplink slots are noise.
  lte_cols = np.flatnonzero((labels == 1).mean(axis=0) > 0.9)
  nr_cols = np.flatnonzero((labels == 2).any(axis=0))
  assert lte_cols.size and nr_cols.size and not np.isin(nr_cols, lte_cols).any()
  assert (labels[:, nr_cols] == 0).mean() > 0.1
  # Alone, the LTE (5 MHz at -6 MHz: 240 kHz columns 29.6..48.4) is labelled where its energy is.
  _, alone = render(rng, [("lte", strong)], (32, 128, 1), CONFIG, classes)
  columns = np.flatnonzero((alone == 1).any(axis=0))
  assert columns.min() >= 25 and columns.max() <= 53  # + unfiltered OFDM sidelobes at 20 dB
  assert (alone[:, 31:47] == 1).all() and set(np.unique(alone)) == {0, 1}


@pytest.mark.parametrize("name,shape", [("lte_nr", (64, 64, 1)), ("radio_scene", (32, 48, 2))])
def test_registered_generators_are_deterministic(name, shape):
  generator = generators.get_generator(name)
  a = generator(np.random.default_rng([4, 1]), shape)
  b = generator(np.random.default_rng([4, 1]), shape)
  c = generator(np.random.default_rng([4, 2]), shape)
  generators.check_example(a, generator, shape, name)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["spectrogram"], c["spectrogram"])
  assert np.all(np.isfinite(a["spectrogram"])) and a["spectrogram"].min() > 0


def test_scene_too_short_for_the_shape_is_an_error():
  with pytest.raises(ValueError, match="fewer time rows or longer frames"):
    render(np.random.default_rng(0), [], (4096, 64, 1), CONFIG)


@pytest.mark.parametrize("shape", [(16, 64), (7, 224), (5, 33)])
def test_numpy_and_tensorflow_stft_agree(shape):
  from msm_jax.data.tfds_pipeline import import_tf
  tf, _ = import_tf()
  spec = st.spec_for(*shape)
  rng = np.random.default_rng(5)
  iq = (rng.standard_normal((2, spec.samples(3) + 17)) + 1j * rng.standard_normal(
      (2, spec.samples(3) + 17))).astype(np.complex64)
  iq[0] += 3 * np.exp(2j * np.pi * 0.123 * np.arange(iq.shape[1]))  # a tone: checks centring
  expected = st.power_spectrogram(iq, spec)
  got = st.tf_power_spectrogram(tf.constant(iq), spec).numpy()
  assert expected.shape == got.shape == (2,) + shape
  np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
  assert expected[1].mean() == pytest.approx(2.0, rel=0.1)  # complex noise of power 2
  assert np.argmax(expected[0].mean(axis=0)) == int((0.5 + 0.123) * shape[1])

"""Radio scenes: numerology measured from generated IQ, TDD and load in the resource grids, STFT,
labels, SNR, what lte_nr / lte_nr_holdout draw per split, determinism."""
import os
import subprocess
import sys

import numpy as np
import pytest

from msm_jax.data import generators
from msm_jax.data.radio import generators as radio_generators
from msm_jax.data.radio import numerology as nm
from msm_jax.data.radio import stft as st
from msm_jax.data.radio.channel import apply_channel
from msm_jax.data.radio.emitters import narrowband, radar_pulses
from msm_jax.data.radio.lte import lte_signal
from msm_jax.data.radio.lte import resource_mask as lte_resource_mask
from msm_jax.data.radio.nr import nr_signal
from msm_jax.data.radio.nr import resource_mask as nr_resource_mask
from msm_jax.data.radio.scene import SceneConfig, capture_config, carrier_iq, render

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


def prefix_runs(iq, n_fft):
  """(start, length) of the runs where x[n] == x[n + n_fft]: cyclic prefixes (and silences)."""
  same = np.abs(iq[:-n_fft] - iq[n_fft:]) < 1e-6 * np.abs(iq).max()
  edges = np.flatnonzero(np.diff(np.concatenate([[0], same.astype(int), [0]])))
  return edges[::2], edges[1::2] - edges[::2]


def demodulate(iq, n_fft, cp):
  """Resource grid (symbols, n_fft) of OFDM IQ, from the first half-subframe start in it (the
  first sample of a cyclic prefix of exactly cp[0], the long one) on: subcarrier k in column
  k mod n_fft, as the modulator's orthonormal IFFT put it."""
  starts, lengths = prefix_runs(iq, n_fft)
  position = starts[(lengths == cp[0]) & (np.abs(iq[starts]) > 0)][0]
  rows = []
  while position + cp[len(rows) % len(cp)] + n_fft <= len(iq):
    body = position + cp[len(rows) % len(cp)]
    rows.append(iq[body:body + n_fft])
    position = body + n_fft
  return np.fft.fft(np.array(rows), axis=1, norm="ortho")


@pytest.mark.parametrize("signal,sample_rate,expected", [
    ("lte", FS, {160: 1, 144: 6}),  # FFT 2048: CP 160 then 6 x 144 per 0.5 ms slot
    ("nr", 2 * FS, {176: 1, 144: 13}),  # 30 kHz, FFT 2048: 14 symbols per 0.5 ms
    ("nr15", FS, {160: 1, 144: 6}),  # 15 kHz, FFT 2048: as LTE, 7 symbols per 0.5 ms
])
def test_cyclic_prefix_lengths(signal, sample_rate, expected):
  rng = np.random.default_rng(1)
  if signal == "lte":
    iq, n_fft = lte(rng, n=sample_rate * 0.003), 2048
  else:
    iq, n_fft = nr(rng, n=sample_rate * 0.003, sample_rate=sample_rate, tdd=None,
                   scs_khz=15 if signal == "nr15" else 30), 2048
  # A cyclic prefix repeats the last samples of its symbol: runs where x[n] == x[n + n_fft].
  runs = prefix_runs(iq, n_fft)[1][1:-1]  # the first and last runs may be cut by the capture
  lengths, counts = np.unique(runs[runs > 16], return_counts=True)
  assert set(lengths) == set(expected)
  ratio = dict(zip(lengths, counts))
  (big, n_big), (small, n_small) = sorted(expected.items(), reverse=True)
  assert ratio[small] / ratio[big] == pytest.approx(n_small / n_big, rel=0.25)


def test_lte_sync_pbch_and_control_region_where_36_211_puts_them():
  amplitude = 10.0  # 20 dB
  grid = demodulate(lte(np.random.default_rng(4), n=FS * 0.022, load=0.0), 2048, [160] + [144] * 6)
  k = np.arange(-600, 601)
  on = np.abs(grid[:, k % 2048]) > amplitude / 2  # rows: symbols from a slot start; DC unused
  assert not on[:, k == 0].any()
  occupied = [frozenset(k[row]) for row in on]
  sync = set(range(-31, 32)) - {0}  # PSS / SSS: the central 62 subcarriers and nothing else
  pbch = set(range(-36, 37)) - {0}  # PBCH: the central 72
  sync_rows = np.array([r for r, used in enumerate(occupied) if used == sync])
  starts = sync_rows[::2]
  np.testing.assert_array_equal(sync_rows[1::2], starts + 1)  # pairs: SSS on 5, PSS on 6
  assert len(starts) >= 4 and set(starts % 7) == {5}
  np.testing.assert_array_equal(np.diff(starts), 70)  # subframes 0 and 5: every 5 ms
  # PBCH on symbols 1-3 (and 0, with the CRS) of the slot after every other sync pair: 10 ms.
  pbch_rows = np.array([r for r, used in enumerate(occupied) if used == pbch])
  after = [s for s in starts if s + 5 < len(on)]
  with_pbch = [s for s in after if {s + 3, s + 4, s + 5} <= set(pbch_rows)]
  assert len(pbch_rows) == 3 * len(with_pbch) and len(with_pbch) >= 2
  np.testing.assert_array_equal(np.diff(with_pbch), 140)
  assert all(pbch < occupied[s + 2] for s in with_pbch)  # symbol 0: PBCH + the CRS
  # Control region: the first 1-3 symbols (a random number per subframe) of every subframe
  # (14 symbols; the sync pair sits in the first slot of its subframe) fill the whole band - and
  # no other symbol does.
  full = set(np.flatnonzero(on[:, k != 0].all(axis=1)))
  lengths, control = [], set()
  for first in range((starts[0] - 5) % 14, len(on) - 3, 14):
    length = next(n for n in range(4) if first + n not in full)
    lengths.append(length)
    control |= set(range(first, first + length))
  assert set(lengths) == {1, 2, 3} and control == full - {len(on) - 3, len(on) - 2, len(on) - 1}


def nr_grid(load, **kwargs):
  """Demodulated 12 ms of 20 MHz NR at 30 kHz, 61.44 Msps (FFT 2048): (on (symbols, 612) where a
  resource element carries power, its subcarriers k)."""
  cp = [176] + [144] * 13
  iq = nr(np.random.default_rng(6), n=2 * FS * 0.012, sample_rate=2 * FS, load=load, **kwargs)
  grid = demodulate(iq, 2048, cp)
  k = np.arange(-306, 306)  # 51 RBs, no DC gap in NR
  assert np.abs(grid[:, np.setdiff1d(np.arange(2048), k % 2048)]).max() < 1e-3  # out of band
  return np.abs(grid[:, k % 2048]) > 5.0, k


def test_nr_tdd_leaves_uplink_empty_and_full_load_fills_the_rest():
  on, _ = nr_grid(1.0, tdd="DDDSU")
  # DDDSU: the special slot's last 4 symbols and the uplink slot are silent: 18 symbols every
  # 5 slots (70 symbols), from symbol 10 of a slot. (Rows start at a slot that is not silent; a
  # silence at the end may be cut short.)
  empty = np.flatnonzero(~on.any(axis=1))
  runs = np.split(empty, np.flatnonzero(np.diff(empty) > 1) + 1)
  assert all(run[0] % 14 == 10 for run in runs)
  whole = [run for run in runs if run[-1] < len(on) - 1]
  assert len(whole) >= 3 and all(len(run) == 18 for run in whole)
  np.testing.assert_array_equal(np.diff([run[0] for run in runs]), 70)
  # Every other symbol is full, CORESET symbols included (PDSCH around it), but for the unused
  # subcarriers of an SS/PBCH block's PSS (113 of its 240) and SSS (17) symbols.
  sent = on[on.any(axis=1)]
  assert set(np.unique(612 - sent.sum(axis=1))) <= {0, 17, 113} and sent.all(axis=1).mean() > 0.9


def test_nr_coreset_starts_every_slot_at_partial_load():
  on, k = nr_grid(0.6)
  # The CORESET: the first symbol of each slot that sends a PDCCH uses only a fixed block of
  # 6-RB multiples, narrower than the band (data starts after it).
  slots = [r for r in range(0, len(on) - 13, 14) if on[r].any()]
  blocks = {tuple(k[on[r]]) for r in slots}
  assert len(slots) >= 8 and len(blocks) == 1
  block = np.array(blocks.pop())
  assert np.all(np.diff(block) == 1) and len(block) % 72 == 0 and 144 <= len(block) < 612


def test_full_load_fdd_nr_mask_is_full_but_for_the_ss_pbch_gaps():
  mask = nr_resource_mask(np.random.default_rng(0), 51, 1, 0, 40, ssb_period_ms=20, ssb_count=8,
                          tdd=None, special_symbols=10, load=1.0)
  # 20 ms of 30 kHz slots from a frame start: one burst of 8 blocks, each with a PSS symbol (113
  # empty subcarriers) and an SSS symbol (17); every other resource element is occupied.
  gaps = mask.shape[1] - mask.sum(axis=1)
  assert sorted(gaps[gaps > 0]) == [17] * 8 + [113] * 8
  assert np.flatnonzero(gaps).max() < 5 * 2 * 14  # in the burst's half-frame


def test_nr_tdd_mask_empties_uplink_and_sends_only_downlink_ss_pbch_blocks():
  # DSUUU at 30 kHz with 6 downlink symbols in S: of the 8 blocks (slots 0-3, symbols 2 and 8)
  # only those of slot 0 and the first of slot 1 fit in downlink symbols.
  mask = nr_resource_mask(np.random.default_rng(1), 51, 1, 0, 20, ssb_period_ms=10, ssb_count=8,
                          tdd="DSUUU", special_symbols=6, load=1.0)
  symbols = mask.reshape(20, 14, -1).any(axis=2)  # (slot, symbol): anything sent
  downlink = np.zeros((5, 14), bool)
  downlink[0], downlink[1, :6] = True, True
  np.testing.assert_array_equal(symbols, np.tile(downlink, (4, 1)))
  gaps = mask.shape[1] - mask.sum(axis=1)
  assert sorted(gaps[(gaps > 0) & (gaps < mask.shape[1])]) == [17] * 3 + [113] * 3
  with pytest.raises(ValueError, match="DDSU.*15 kHz"):
    nr(np.random.default_rng(1), scs_khz=15, tdd="DDSU")


@pytest.mark.parametrize("config", [1, 5])
def test_lte_tdd_mask_empties_uplink_keeps_crs_and_moves_the_sync(config):
  cell_id, dwpts = 7, 9
  pattern = nm.LTE_TDD_CONFIGS[config]
  mask = lte_resource_mask(np.random.default_rng(config), 25, 0, 20, cell_id, 0.3, pattern, dwpts)
  subframes = mask.reshape(10, 14, -1)  # one radio frame from subframe 0: (subframe, symbol)
  j = np.arange(mask.shape[1])
  for number, kind in enumerate(pattern):
    sent = subframes[number].any(axis=1)
    downlink = {"D": 14, "S": dwpts, "U": 0}[kind]
    np.testing.assert_array_equal(sent, np.arange(14) < downlink)
    for symbol in [s for s in (0, 4, 7, 11) if s < downlink]:  # CRS: always on in downlink
      assert subframes[number, symbol, (j - cell_id - 3 * (symbol % 7 == 4)) % 6 == 0].all()
  # TDD sync: SSS on the last symbol of subframes 0 and 5, PSS on the third of 1 and 6, on the
  # central 62 subcarriers; FDD's on symbols 5 and 6 of subframes 0 and 5 (none on symbol 13).
  centre = np.zeros(mask.shape[1], bool)
  centre[mask.shape[1] // 2 - 31:mask.shape[1] // 2 + 31] = True
  assert subframes[[0, 5, 1, 6], [13, 13, 2, 2]][:, centre].all()
  fdd = lte_resource_mask(np.random.default_rng(0), 25, 0, 20, cell_id, 0.0).reshape(10, 14, -1)
  assert fdd[[0, 0, 5, 5], [5, 6, 5, 6]][:, centre].all() and not fdd[:, 13].any()


def test_channel_doppler_spectrum_is_jakes():
  fs, n = 2.56e6, 2 ** 17  # 51 ms: 19.5 Hz bins; 100 us gain blocks
  tone = np.ones(n, np.complex64)
  f = np.fft.fftfreq(n, 1 / fs)
  lines = np.abs(f) < 1e3
  for doppler in (150.0, 400.0):
    # The Doppler spectrum of a faded tone, averaged over channels (one is only 8 sinusoids).
    psd = sum(np.abs(np.fft.fft(np.hanning(n) * apply_channel(
        np.random.default_rng(seed), tone, fs, doppler_hz=doppler, delay_spread_s=0,
        cfo_hz=0))) ** 2 for seed in range(24))
    # Every line within +-fd. (Holding the gains for each 100 us block leaves images of ~0.1 % of
    # the power around multiples of 10 kHz: look below those.)
    assert psd[(np.abs(f) > doppler + 4 * fs / n) & (np.abs(f) < 5e3)].sum() < 1e-4 * psd.sum()
    # Jakes' spectrum (arrivals from uniform angles) has an RMS Doppler spread of fd / sqrt(2).
    spread = np.sqrt(np.sum(psd[lines] * f[lines] ** 2) / psd[lines].sum())
    assert spread == pytest.approx(doppler / np.sqrt(2), rel=0.1)
  still = apply_channel(np.random.default_rng(7), tone, fs, doppler_hz=0.0, delay_spread_s=0,
                        cfo_hz=0)
  assert np.ptp(np.abs(still)) < 1e-5  # no Doppler: a constant gain


@pytest.mark.parametrize("cfo_hz", [3e3, -1.5e3])
def test_carrier_offset_shifts_the_spectrum(cfo_hz):
  fs, n, tone_hz = 2.56e6, 2 ** 17, 100e3
  tone = np.exp(2j * np.pi * tone_hz * np.arange(n) / fs).astype(np.complex64)
  y = apply_channel(np.random.default_rng(8), tone, fs, doppler_hz=0.0, delay_spread_s=0,
                    cfo_hz=cfo_hz)
  peak = np.fft.fftfreq(n, 1 / fs)[np.argmax(np.abs(np.fft.fft(y * np.hanning(n))))]
  assert peak == pytest.approx(tone_hz + cfo_hz, abs=fs / n)


def test_narrowband_occupies_symbol_rate_times_one_plus_rolloff():
  sps, rolloff, centre, snr_db = 64, 0.35, 3e6, 20.0
  x = narrowband(np.random.default_rng(9), int(FS * 0.03), FS, samples_per_symbol=sps,
                 rolloff=rolloff, centre_hz=centre, snr_db=snr_db, modulation="16qam")
  psd = spectrum(x)  # 15 kHz bins, unit noise floor = 1
  hz = (np.arange(len(psd)) - len(psd) // 2) * 15e3
  rate = FS / sps  # 480 kHz
  flat = np.abs(hz - centre) < 0.3 * rate
  assert 10 * np.log10(np.median(psd[flat])) == pytest.approx(snr_db, abs=0.5)
  level = np.median(psd[flat])
  edges = hz[psd > 1e-3 * level]  # -30 dB: the raised-cosine band edge
  assert edges.max() - edges.min() == pytest.approx(rate * (1 + rolloff), rel=0.04)
  assert (edges.max() + edges.min()) / 2 == pytest.approx(centre, abs=15e3)
  half = hz[psd > level / 2]  # -3 dB: the symbol rate
  assert half.max() - half.min() == pytest.approx(rate, abs=2 * 15e3)


def test_chirp_sweeps_its_band_linearly():
  bandwidth, centre, sweep = 10e6, -2e6, 100e-6
  x = radar_pulses(np.random.default_rng(10), int(FS * 0.01), FS, centre_hz=centre,
                   bandwidth_hz=bandwidth, pulse_s=sweep, interval_s=sweep, snr_db=10.0)
  psd = spectrum(x)
  hz = (np.arange(len(psd)) - len(psd) // 2) * 15e3
  band = hz[psd > 0.1 * np.median(psd[np.abs(hz - centre) < 0.4 * bandwidth])]
  # Edges blurred by the chirp's Fresnel ripples, sqrt(B / T) ~ 300 kHz wide.
  assert band.min() == pytest.approx(centre - bandwidth / 2, abs=200e3)
  assert band.max() == pytest.approx(centre + bandwidth / 2, abs=200e3)
  # Instantaneous frequency inside one sweep: a line from one band edge to the other.
  inst = np.angle(x[1:] * np.conj(x[:-1])) * FS / (2 * np.pi)
  jumps = np.flatnonzero(np.abs(np.diff(inst)) > bandwidth / 2)
  one = inst[jumps[0] + 2:jumps[1]]
  t = np.arange(len(one)) / FS
  slope, start = np.polyfit(t, one, 1)
  assert abs(slope) == pytest.approx(bandwidth / sweep, rel=1e-3)
  assert sorted([start, start + slope * sweep]) == pytest.approx(
      [centre - bandwidth / 2, centre + bandwidth / 2], abs=50e3)
  # Pulsed: on for pulse_s of every interval_s.
  pulsed = radar_pulses(np.random.default_rng(10), int(FS * 0.01), FS, centre_hz=centre,
                        bandwidth_hz=bandwidth, pulse_s=20e-6, interval_s=sweep, snr_db=10.0)
  assert np.mean(pulsed != 0) == pytest.approx(0.2, abs=0.01)


def test_capture_settings_reach_the_scene():
  config = capture_config(30.72e6, 0.012)
  rng = np.random.default_rng(0)
  lte_carrier = radio_generators.draw_carrier(rng, "lte", config)
  assert len(carrier_iq(rng, lte_carrier, config)) == int(30.72e6 * 0.012)
  lte_nr = generators.get_generator("lte_nr")
  shape = (16, 32, 1)
  default = lte_nr(np.random.default_rng(5), shape)
  captured = lte_nr(np.random.default_rng(5), shape, sample_rate=30.72e6, frame_seconds=0.012)
  again = lte_nr(np.random.default_rng(5), shape, sample_rate=30.72e6, frame_seconds=0.012)
  np.testing.assert_array_equal(captured["spectrogram"], again["spectrogram"])
  assert not np.array_equal(default["spectrogram"], captured["spectrogram"])
  with pytest.raises(ValueError, match="a 10 ms frame at 30.72 Msps has 307200 samples"):
    lte_nr(np.random.default_rng(5), (700, 32, 1), sample_rate=30.72e6, frame_seconds=0.01)


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


@pytest.mark.parametrize("name,shape,split", [
    ("lte_nr", (64, 64, 1), "train"), ("lte_nr_holdout", (64, 64, 1), "train"),
    ("lte_nr_holdout", (64, 64, 1), "test"), ("radio_scene", (32, 48, 2), "train")])
def test_registered_generators_are_deterministic(name, shape, split):
  generator = generators.get_generator(name)
  a = generator(np.random.default_rng([4, 1]), shape, split)
  b = generator(np.random.default_rng([4, 1]), shape, split)
  c = generator(np.random.default_rng([4, 2]), shape, split)
  generators.check_example(a, generator, shape, name)
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["spectrogram"], c["spectrogram"])
  assert np.all(np.isfinite(a["spectrogram"])) and a["spectrogram"].min() > 0


def generator_draws(monkeypatch, name, split, count, **capture):
  """What `count` scenes of generator `name`'s `split` draw: per scene [(class name, Carrier, or
  None for another emitter)], with synthesis and rendering skipped."""
  drawn = []
  monkeypatch.setattr(radio_generators, "carrier_iq", lambda rng, carrier, config: carrier)
  monkeypatch.setattr(radio_generators, "random_other", lambda rng, config: None)
  monkeypatch.setattr(radio_generators, "render",
                      lambda rng, components, *args: (drawn.append(components), (None, None))[1])
  generator = generators.get_generator(name)
  for seed in range(count):
    generator(np.random.default_rng(seed), (8, 8, 1), split, **capture)
  return drawn


def carriers_of(scenes):
  return [carrier for scene in scenes for name, carrier in scene if name != "noise"]


def test_lte_nr_holdout_trains_without_held_out_carriers_and_tests_on_them_only(monkeypatch):
  held_out = radio_generators.held_out
  everything = carriers_of(generator_draws(monkeypatch, "lte_nr", "train", 300))
  assert 0.2 < np.mean([held_out(c) for c in everything]) < 0.6
  assert max(c.bandwidth_mhz for c in everything) == 50  # all NR widths that fit 61.44 Msps
  for split in ("train", "validation"):
    seen = carriers_of(generator_draws(monkeypatch, "lte_nr_holdout", split, 300))
    assert not any(map(held_out, seen))
    # Still FDD and TDD, full (TDD) and partial load, NR up to 20 MHz at 15 and 30 kHz.
    assert {(c.tdd is None, c.load == 1) for c in seen} == {(True, False), (False, False),
                                                           (False, True)}
    nr_carriers = [c for c in seen if c.kind == "nr"]
    assert max(c.bandwidth_mhz for c in nr_carriers) == 20
    assert {c.scs_khz for c in nr_carriers} == {15, 30}
  scenes = generator_draws(monkeypatch, "lte_nr_holdout", "test", 300)
  held = carriers_of(scenes)
  assert all(map(held_out, held))
  assert {tuple(name for name, _ in scene if name != "noise") for scene in scenes} == {
      ("lte",), ("nr",), ("lte", "nr")}
  # Both reasons: fully loaded FDD (LTE and NR) and wide NR (FDD or TDD, any load).
  assert {c.kind for c in held if c.tdd is None and c.load == 1} == {"lte", "nr"}
  assert {c.tdd is None for c in held if c.bandwidth_mhz > 20} == {True, False}


def test_other_emitters_join_a_share_of_lte_nr_scenes_as_noise(monkeypatch):
  scenes = generator_draws(monkeypatch, "lte_nr", "train", 300)
  others = [sum(name == "noise" for name, _ in scene) for scene in scenes]
  assert set(others) == {0, 1, 2} and 0.2 < np.mean(np.array(others) > 0) < 0.4
  assert all(len(scene) - n in (1, 2) for scene, n in zip(scenes, others))


def test_other_emitters_are_labelled_noise_where_strongest():
  rng = np.random.default_rng(11)
  carrier = lte(rng, n=CONFIG.n_samples, bandwidth_mhz=10, snr_db=10.0)  # +-4.5 MHz
  # 1.92 Msym/s (2.3 MHz wide) carriers: one 10 MHz below the LTE, one inside it, stronger.
  apart, inside = (narrowband(rng, CONFIG.n_samples, FS, samples_per_symbol=16, rolloff=0.2,
                              centre_hz=centre, snr_db=snr) for centre, snr in ((-10e6, 20.0),
                                                                                (2e6, 25.0)))
  components = [("lte", carrier), ("noise", apart), ("noise", inside)]
  power, labels = render(rng, components, (16, 128, 1), CONFIG, ("noise", "lte", "nr"))
  columns = lambda hz: int((hz + FS / 2) / (FS / 128))  # 240 kHz columns
  for centre in (-10e6, 2e6):
    loud = slice(columns(centre) - 2, columns(centre) + 3)
    assert power[:, loud].mean() > 30 and (labels[:, loud] == 0).all()
  assert (labels[:, columns(-4e6):columns(1e6)] == 1).mean() > 0.95


def test_a_122_88_msps_capture_draws_nr_carriers_up_to_100_mhz(monkeypatch):
  scenes = generator_draws(monkeypatch, "lte_nr_holdout", "test", 100, sample_rate=122.88e6,
                           frame_seconds=0.01)
  assert max(c.bandwidth_mhz for c in carriers_of(scenes)) == 100
  iq = nr(np.random.default_rng(12), n=122.88e6 * 0.002, sample_rate=122.88e6,
          bandwidth_mhz=100)
  assert occupied_hz(iq, 122.88e6) == pytest.approx(273 * 12 * 30e3, abs=2 * 60e3)


def test_scene_too_short_for_the_shape_is_an_error():
  with pytest.raises(ValueError, match="5 ms frame at 30.72 Msps.*use fewer time rows or a longer"):
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

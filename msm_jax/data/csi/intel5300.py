"""Intel 5300 CSI Tool logs (.dat, as in Widar3.0): bfee records and Widar3.0 file-name fields.

A log is a sequence of records [uint16 big-endian length][uint8 code][length - 1 bytes]; code 0xBB
holds beamforming feedback: a 20-byte little-endian header (timestamp_low, bfee_count, 2 reserved,
Nrx, Ntx, rssi_a/b/c, int8 noise, agc, antenna_sel, len, fake_rate_n_flags) and `len` payload bytes:
for each of 30 subcarriers, 3 padding bits then Nrx * Ntx (real, imag) int8 pairs, one LSB-first bit
stream (value j of a subcarrier is rx j // Ntx, tx j % Ntx). Receive chain i of a record is
antenna perm[i] = (antenna_sel >> 2i) & 3 (0-based here) of that record's own antenna_sel, and is
moved there, as the CSI Tool's read_bf_file.m does. Other record codes are skipped. Values are the
raw int8 CSI (the RSSI/AGC based rescaling to absolute power is left out; amplitudes are
standardised downstream anyway).
"""
import os
import re

import numpy as np

from msm_jax.data.csi.recording import CsiFileError, CsiRecording

BFEE_CODE = 0xBB
HEADER_BYTES = 20
N_SUBCARRIERS = 30
_HEADER = np.dtype([("timestamp_low", "<u4"), ("bfee_count", "<u2"), ("reserved", "<u2"),
                    ("n_rx", "u1"), ("n_tx", "u1"), ("rssi_a", "u1"), ("rssi_b", "u1"),
                    ("rssi_c", "u1"), ("noise", "i1"), ("agc", "u1"), ("antenna_sel", "u1"),
                    ("len", "<u2"), ("fake_rate_n_flags", "<u2")])
WIDAR_NAME = re.compile(r"^user(\d+)-(\d+)-(\d+)-(\d+)-(\d+)-r(\d+)\.dat$")
WIDAR_FIELDS = ("user", "gesture", "location", "orientation", "repetition", "receiver")
WIDAR_INSTANCE = WIDAR_FIELDS[:-1]  # one performance of a gesture, logged by every receiver


def payload_bytes(n_rx: int, n_tx: int) -> int:
  return (N_SUBCARRIERS * (n_rx * n_tx * 16 + 3) + 7) // 8


def _records(path, data: bytes) -> list[tuple[int, int]]:
  """(offset, size) of the bfee bodies in `data`, checking every record's framing."""
  records, position = [], 0
  while position < len(data):
    if len(data) - position < 3:
      raise CsiFileError(path, f"truncated record header at byte {position}.")
    length = int.from_bytes(data[position:position + 2], "big")
    if length < 1 or position + 2 + length > len(data):
      raise CsiFileError(path, f"truncated record at byte {position}: it declares {length} bytes, "
                               f"{len(data) - position - 2} are left.")
    if data[position + 2] == BFEE_CODE:
      if length - 1 < HEADER_BYTES:
        raise CsiFileError(path, f"0xBB record at byte {position} holds {length - 1} bytes, "
                                 f"fewer than the {HEADER_BYTES}-byte bfee header.")
      records.append((position + 3, length - 1))
    position += 2 + length
  return records


def parse_bfee(path, data: bytes) -> tuple[np.ndarray, dict]:
  """CSI complex64 (packets, 30, n_rx, n_tx), each packet's antennas permuted by its own
  antenna_sel, and per-packet header fields. Records with another Nrx x Ntx than the first are
  skipped (counted in info['skipped_records'])."""
  records = _records(path, data)
  if not records:
    raise CsiFileError(path, "holds no CSI (0xBB beamforming feedback) records.")
  headers = np.stack([np.frombuffer(data, _HEADER, 1, offset)[0] for offset, _ in records])
  n_rx, n_tx = int(headers["n_rx"][0]), int(headers["n_tx"][0])
  if not (1 <= n_rx <= 3 and 1 <= n_tx <= 3):
    raise CsiFileError(path, f"first record has Nrx={n_rx}, Ntx={n_tx}; both must be 1..3.")
  same = (headers["n_rx"] == n_rx) & (headers["n_tx"] == n_tx)
  size = payload_bytes(n_rx, n_tx)
  bad = np.flatnonzero(same & (headers["len"] != size))
  if bad.size:
    raise CsiFileError(path, f"record {bad[0]} declares a {headers['len'][bad[0]]}-byte payload; "
                             f"{n_rx}x{n_tx} antennas need {size}.")
  for index in np.flatnonzero(same):  # the payload must fit in its own record, not run on
    if records[index][1] < HEADER_BYTES + size:
      raise CsiFileError(path, f"record {index} holds {records[index][1]} bytes; its header and "
                               f"{size}-byte CSI payload need {HEADER_BYTES + size}.")
  kept = [records[i][0] + HEADER_BYTES for i in np.flatnonzero(same)]
  payload = np.stack([np.frombuffer(data, np.uint8, size, start) for start in kept])
  bits = np.unpackbits(np.pad(payload, ((0, 0), (0, 2))), axis=1, bitorder="little")
  values = n_rx * n_tx
  # First bit of each (subcarrier, value, real/imag) byte in the stream.
  first = (3 * (np.arange(N_SUBCARRIERS)[:, None, None] + 1)
           + 16 * (np.arange(N_SUBCARRIERS)[:, None, None] * values
                   + np.arange(values)[None, :, None]) + 8 * np.arange(2))
  weights = (1 << np.arange(8)).astype(np.uint16)
  raw = (bits[:, first[..., None] + np.arange(8)] * weights).sum(-1).astype(np.uint8).view(np.int8)
  csi = (raw[..., 0] + 1j * raw[..., 1].astype(np.float32)).astype(np.complex64)
  csi = csi.reshape(len(kept), N_SUBCARRIERS, n_rx, n_tx)
  headers = headers[same]
  perm = (headers["antenna_sel"][:, None].astype(int) >> (2 * np.arange(n_rx))) & 3
  # As read_bf_file.m, a record whose antenna_sel is no permutation of 0..n_rx-1 stays unpermuted.
  valid = np.all(np.sort(perm, axis=1) == np.arange(n_rx), axis=1)
  perm[~valid] = np.arange(n_rx)
  permuted = np.empty_like(csi)
  permuted[np.arange(len(csi))[:, None], :, perm] = csi.transpose(0, 2, 1, 3)
  info = {name: headers[name].copy() for name in _HEADER.names if name != "reserved"}
  info.update(antenna_permutation=perm, skipped_records=int((~same).sum()))
  return permuted, info


def widar_fields(path) -> dict:
  """{'user', 'gesture', 'location', 'orientation', 'repetition', 'receiver'} from a Widar3.0 file
  name userN-a-b-c-d-rX.dat; {} for other names."""
  match = WIDAR_NAME.match(os.path.basename(path))
  return dict(zip(WIDAR_FIELDS, map(int, match.groups()))) if match else {}


def read_dat(path) -> CsiRecording:
  """A .dat log as amplitude float32 (n_rx * n_tx, 30, packets), rx-major, plus header fields,
  Widar3.0 file-name fields and the complex CSI in info. A value quantised to 0 + 0j reads as
  amplitude 0.5 (half a step: below one step, never exactly zero power)."""
  with open(path, "rb") as f:
    csi, info = parse_bfee(path, f.read())
  amplitude = np.maximum(np.abs(csi), 0.5).transpose(2, 3, 1, 0)
  amplitude = amplitude.reshape(-1, N_SUBCARRIERS, len(csi))
  info.update(format="intel5300", csi=csi, **widar_fields(path))
  return CsiRecording(amplitude.astype(np.float32), info)

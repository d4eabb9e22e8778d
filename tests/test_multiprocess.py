"""Two local JAX processes (jax.distributed on 127.0.0.1, gloo CPU collectives, one CPU device
each) train exactly as one process does on the same global batch.

Each test starts tests/multiprocess_worker.py twice (process_id 0 and 1) and compares with the
same steps computed here, in the pytest process, on a single device:
  * the library's multi-host path (Parallel('jit') over the 2 global devices, each process feeding
    its half of the SyntheticSource batch through make_array_from_process_local_data) gives the
    single-device losses and parameters, and so does Parallel('pmap');
  * the whole loop (pretrain -> train) in 2 processes logs the same losses, writes metrics.jsonl,
    TensorBoard and stdout from process 0 only, and checkpoints the Checkpointer restores;
  * rerun after losing its last checkpoint, that 2-process run resumes and ends on the same state.
The tests skip only when this jax cannot do CPU collectives with gloo.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import multiprocess_worker as worker
from msm_jax.checkpoint.manager import Checkpointer, restore_encoder
from msm_jax.data.synthetic import SyntheticSource
from msm_jax.training.optimizer import learning_rate_schedule
from msm_jax.training.pretrain import MsmTask
from msm_jax.training.step import make_train_step

NUM_PROCESSES = 2
TIMEOUT_S = 180  # per 2-process run; a healthy one takes ~10 s on 2 idle cores
PORT_ATTEMPTS = 3  # a free port found here may be taken before the coordinator binds it
WORKER = os.path.abspath(worker.__file__)
# Environment variables that would make jax pick another device count or cluster set-up.
_DROPPED_ENV = ("JAX_NUM_CPU_DEVICES", "JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
                "JAX_PROCESS_ID", "JAX_LOCAL_DEVICE_IDS")
_DROPPED_PREFIXES = ("SLURM_", "OMPI_", "PMI_", "PMIX_", "TPU_", "CLOUD_TPU", "MEGASCALE_")


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _worker_env() -> dict:
  env = {k: v for k, v in os.environ.items()
         if k not in _DROPPED_ENV and not k.startswith(_DROPPED_PREFIXES)}
  # conftest.py gives this process 8 devices; each worker gets exactly one.
  env.update(XLA_FLAGS="--xla_force_host_platform_device_count=1", JAX_PLATFORMS="cpu",
             TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
  return env


def _tail(path, limit=6000) -> str:
  with open(path, errors="replace") as f:
    text = f.read()
  return text if len(text) <= limit else "[...]\n" + text[-limit:]


class _Run:
  """One attempt: both worker processes, their exit codes and captured output."""

  def __init__(self, mode, out, logdir, attempt):
    self.port = _free_port()
    self.procs, self.stdout, self.stderr = [], [], []
    env = _worker_env()
    for pid in range(NUM_PROCESSES):
      stem = os.path.join(logdir, f"{mode}.{attempt}.process{pid}")
      self.stdout.append(stem + ".stdout")
      self.stderr.append(stem + ".stderr")
      # Files rather than pipes: nobody has to drain them while we wait for the other process.
      with open(self.stdout[-1], "w") as so, open(self.stderr[-1], "w") as se:
        self.procs.append(subprocess.Popen(
            [sys.executable, WORKER, mode, str(self.port), str(pid), str(NUM_PROCESSES), str(out)],
            cwd=worker.ROOT, env=env, stdout=so, stderr=se, stdin=subprocess.DEVNULL))
    self.codes = [None] * NUM_PROCESSES
    self.killed = []
    self.timed_out = False

  def wait(self, timeout_s):
    """Waits for both; as soon as one fails (or time runs out) kills the other, which would
    otherwise sit in a collective or at the shutdown barrier until its own timeouts."""
    deadline = time.monotonic() + timeout_s
    try:
      while True:
        self.codes = [p.poll() for p in self.procs]
        if all(c is not None for c in self.codes) or any(c not in (None, 0) for c in self.codes):
          break
        if time.monotonic() > deadline:
          self.timed_out = True
          break
        time.sleep(0.1)
    finally:
      for pid, p in enumerate(self.procs):  # only our own children, by their Popen handle
        if p.poll() is None:
          p.kill()
          self.killed.append(pid)
        p.wait()
    return self

  @property
  def ok(self):
    return not self.timed_out and all(c == 0 for c in self.codes)

  def output(self, pid, stream="stderr"):
    return _tail((self.stderr if stream == "stderr" else self.stdout)[pid])

  def port_clash(self):
    # The coordinator binds [::]:port; when taken, process 0 logs "Failed to add port to server"
    # (and crashes with SIGSEGV in jax 0.10.2).
    return any(clue in self.output(pid).lower() for pid in range(NUM_PROCESSES)
               for clue in ("failed to add port", "already in use"))

  def report(self):
    what = f"timed out after {TIMEOUT_S} s" if self.timed_out else f"exit codes {self.codes}"
    if self.killed:
      what += f"; killed process(es) {self.killed} still running then"
    parts = [f"2-process run on port {self.port}: {what}"]
    for pid in range(NUM_PROCESSES):
      parts.append(f"----- process {pid} stderr -----\n{self.output(pid)}")
      parts.append(f"----- process {pid} stdout -----\n{self.output(pid, 'stdout')[-2000:]}")
    return "\n".join(parts)


def run_workers(mode, out, tmp_path) -> _Run:
  """Runs the 2 workers to completion; skips if gloo is unavailable, fails with their output."""
  for attempt in range(PORT_ATTEMPTS):
    run = _Run(mode, out, str(tmp_path), attempt).wait(TIMEOUT_S)
    if worker.GLOO_UNAVAILABLE in run.codes:
      pid = run.codes.index(worker.GLOO_UNAVAILABLE)
      reason = [line for line in run.output(pid).splitlines() if "GLOO_UNAVAILABLE" in line]
      pytest.skip(f"no gloo CPU collectives: {(reason or ['?'])[-1]}")
    if run.ok or not run.port_clash():
      break
  if not run.ok:
    pytest.fail(run.report(), pytrace=False)
  return run


class Reference:
  """The same STEPS steps on one device of this process, on the whole global batch."""

  def __init__(self):
    config = worker.tiny_config()
    task = MsmTask(config)
    init_rng, train_rng = worker.loop_keys(config)
    device = jax.devices()[0]
    state = jax.jit(worker.make_init(config, task))(init_rng)
    self.init_params = worker.flatten(jax.device_get(state.params))
    step = jax.jit(make_train_step(task.loss_fn, learning_rate_schedule(config)))
    source = SyntheticSource(tuple(config.input_shape), seed=config.seed, prefetch=0)
    stream = source.batches(global_batch_size=config.batch_size, start_step=0)
    self.losses = []
    for _ in range(worker.STEPS):
      state, metrics = step(state, jax.device_put(next(stream), device), train_rng)
      self.losses.append(float(metrics["loss"]))
    assert len(set(self.losses)) == worker.STEPS  # the steps really differ
    self.state = jax.device_get(state)
    self.params = worker.flatten(self.state.params)

  def assert_params_close(self, params):
    """`params` (flattened) are the reference's final parameters."""
    # Adam turns float-rounding-sized gradient differences (the 2-process all-reduce sums in
    # another order) into updates of a few % of lr, so parameters agree to well under one
    # update, not bitwise.
    np.testing.assert_allclose(params, self.params, rtol=1e-4, atol=1e-5)
    # With lr ~3e-5 those tolerances alone would pass parameters that never moved, so the
    # training updates themselves must agree: ~6e-4 apart in norm (half-batch data: ~0.5).
    update, ref_update = params - self.init_params, self.params - self.init_params
    gap = np.linalg.norm(update - ref_update) / np.linalg.norm(ref_update)
    assert gap < 1e-2, f"the parameter updates differ by {gap:.3g} of their norm"


@pytest.fixture(scope="module")
def reference():
  return Reference()


@pytest.mark.parametrize("mode", ["jit", "pmap"])
def test_two_processes_match_single_device(mode, tmp_path, reference):
  out = tmp_path / "process0.npz"
  run_workers(mode, out, tmp_path)
  result = np.load(out)
  np.testing.assert_allclose(result["losses"], reference.losses, rtol=1e-5)
  reference.assert_params_close(result["params"])


def read_metrics(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def restore(workdir, reference):
  """The latest checkpoint in `workdir`, read by a fresh (1-process, 8-device) Checkpointer."""
  checkpointer = Checkpointer(str(workdir))
  try:
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                            reference.state)
    return checkpointer.all_steps(), checkpointer.restore_state(abstract)
  finally:
    checkpointer.close()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(workdir, run) of pretrain() run by 2 processes from scratch, shared by the loop tests."""
  tmp = tmp_path_factory.mktemp("train")
  workdir = tmp / "workdir"
  return workdir, run_workers("train", workdir, tmp)


def test_two_process_training_loop_writes_once(trained, reference):
  workdir, run = trained
  # Process 0 alone logs: process 1 appending to the same metrics.jsonl would repeat the steps.
  records = read_metrics(workdir)
  assert [r["step"] for r in records] == list(range(1, worker.STEPS + 1)), records
  np.testing.assert_allclose([r["loss"] for r in records], reference.losses, rtol=1e-5)
  assert len(os.listdir(workdir / "tensorboard")) == 1
  assert f"step {worker.STEPS}/{worker.STEPS}" in run.output(0, "stdout")
  assert "step 1/" not in run.output(1, "stdout")
  with open(workdir / "status.json") as f:
    assert json.load(f) == {"step": worker.STEPS, "total_steps": worker.STEPS, "finished": True,
                            "skipped_steps": 0}

  # The checkpoints (every 2 steps and the last), restored by a fresh 1-process reader.
  steps, restored = restore(workdir, reference)
  assert steps == [2, worker.STEPS]
  assert int(restored.step) == worker.STEPS
  reference.assert_params_close(worker.flatten(restored.params))
  encoder, description = restore_encoder(str(workdir))
  np.testing.assert_array_equal(worker.flatten(encoder), worker.flatten(restored.params["encoder"]))
  assert description["input_shape"] == [32, 32, 1], description


def test_two_process_training_resumes_exactly(trained, reference, tmp_path):
  """A 2-process run killed after its step-2 checkpoint, rerun, ends where the unbroken run does."""
  workdir = tmp_path / "workdir"
  shutil.copytree(trained[0], workdir)
  shutil.rmtree(workdir / "checkpoints" / str(worker.STEPS))  # as if it died before saving 3
  run = run_workers("train", workdir, tmp_path)

  logged = [line for line in run.output(0, "stdout").splitlines() if line.startswith("step ")]
  assert len(logged) == 1 and logged[0].startswith(f"step {worker.STEPS}/"), logged  # resumed
  records = read_metrics(workdir)  # step 3's record replaced by the resumed run's
  assert [r["step"] for r in records] == list(range(1, worker.STEPS + 1)), records
  np.testing.assert_allclose([r["loss"] for r in records], reference.losses, rtol=1e-5)
  steps, restored = restore(workdir, reference)
  assert steps == [2, worker.STEPS]
  assert int(restored.step) == worker.STEPS
  reference.assert_params_close(worker.flatten(restored.params))

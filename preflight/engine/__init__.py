"""Collection: everything that produces measurements, in the dry-run child or about it.

- `runner`: the parent side, `run_probes(ProbeJob) -> ProbeOutcome`; starts `python -m preflight.child`
  and survives its out-of-memory, hang or crash. `processes`: the planned batch again in fresh children.
  `zygote`: the fork server's parent side (the what-ifs' and search configurations' children forked from
  a process that imported TensorFlow once). `recordings`: for a test suite only, a child run recorded
  once and replayed through the runner (PREFLIGHT_REPLAY_DIR).
- `probe`: the one place a training step is measured (warm-up, measured steps), through `readers`: one
  memory reader per Keras backend (TensorFlow, JAX, PyTorch). `backends`: which backend, chosen the Keras
  way, in the parent; `backend_errors`: a layer written for another backend, named.
- `loader` (a model.py), `handoff` (a model or search space from the caller's process), `data` (the
  sample pool), `static_floor` (weights + gradients + optimizer state from shapes alone), `plan` (which
  batch sizes next), `graph_estimate` and `peak_profile` (what the peak is made of), `readiness`,
  `training_signal`, `step_errors`: the child's helpers.
- `launch`, `versions`: facts about the launch read without running anything (source, environment).
- `run_sampler`: the readers and host RSS inside the user's own training process (preflight.keras).

May import: `preflight.errors`, `preflight.common`, and `preflight.analysis` (the plan predicts the
next batch sizes with its peak model). Never the features (tuner, whatif), the renderers or the doors:
the child program (`preflight.child`) is where the engine meets the what-ifs and search spaces.
Importing this package imports no TensorFlow.
"""

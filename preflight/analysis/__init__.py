"""Analysis: pure functions from measurements (preflight.common.measurements) to the report document.

- `assemble`: the one place a report is assembled (`assemble_check`, `assemble_search`) from the facts the
  doors gather; `report_checks`: the findings that need the whole report and those facts.
- `document`: the report document (`build_document`, `search_document`, `FORMAT_VERSION`).
- `recommendations`: the confirmed batch sizes applied, the measured what-ifs ranked.
- `footprint`: the peak split into parameters, gradients, optimizer state, activations, inputs.
- `predict`: the peak-vs-batch model, its margin, projection to targets. `devices`: the target catalogue.
- `lengths`: the same curve over an input's dynamic axis (a sequence length) at the planned batch.
- `checks`: the findings, one small function each, in a registry. `diff`: a report against its baseline.
- `comparison`: one model's reports under several Keras backends, side by side (`compare`).
- `fingerprint`: a model's hash, the same in every process; `run_watch`: the rules a training run is
  watched by; `calibration`: the store's records, a run against its check, a check's earlier runs;
  `calibration_store`: the store itself (JSON lines on disk).
- `gate`: the CI gate's thresholds applied to a document (and its baseline diff).
- `schema`: the document's shape, field by field, which `Report.load` checks what it reads against.

May import: `preflight.errors`, `preflight.common`, and each other. Nothing here runs a child, renders, or
imports TensorFlow.
"""

"""The dry-run child: the program a fresh process runs for the engine's parent side (preflight.engine.runner
starts `python -m preflight.child JOB.json`). `job` loads what the job names and has the engine measure it;
it is a door, like preflight.cli, so it may import every other package: the child is where the engine meets
the what-ifs (preflight.whatif) and search configurations (preflight.tuner). `zygote`: the fork server that
imports TensorFlow once and forks the what-ifs' and search configurations' children from it
(`python -m preflight.child.zygote SOCKET`; its parent side is preflight.engine.zygote)."""

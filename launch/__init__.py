"""Launching benchmark jobs: systems (YAML data), schedulers (how a job is
queued: PJM, UGE, PBS, local), launchers (how ranks start: Fujitsu mpiexec,
Open MPI mpirun), job scripts rendered from both, and submission, sweeps and
log collection."""

"""Run each job through Slurm: the worker sits on a login node and submits sleap-nn with sbatch.

See docs/hpc.md. ``options`` (settings), ``factory`` (``worker.executor`` → the executor),
``commands`` (sbatch/squeue/scontrol/scancel/sinfo), ``script`` (the generated batch script), ``jobwrap`` (what runs inside the Slurm job),
``execution`` (the executor the runner uses), ``capacity`` (what the worker advertises),
``adopt`` (a restarted worker takes its still-running jobs back).
"""

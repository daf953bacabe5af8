"""Job functions: what the workflow's rules (``workflow/scripts/<rule>.py``) and the ``abt``
command call, one module per stage, each usable and tested without Snakemake.

* :mod:`abt.jobs.data` -- log-mel stores, task sanity baselines;
* :mod:`abt.jobs.pretrain` -- pre-training runs (one process or torchrun), sweep workers;
* :mod:`abt.jobs.hear` -- the HEAR kit environment, random-init checkpoints, embeddings and
  predictions through the official kit, linear evaluation, fine-tuning evaluation;
* :mod:`abt.jobs.report` -- ablation and study summaries, the paper's tables.

Each rule's ``params: code`` is the :func:`abt.codehash.code_digest` of the job it runs, so an
edit re-runs exactly the jobs whose code changed.
"""

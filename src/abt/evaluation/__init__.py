"""Downstream evaluation with the official HEAR 2021 kit (thesis §3.4.2).

* :mod:`abt.evaluation.heareval_env` — the separate pinned evaluation venv (heareval 2021.1.3,
  hearvalidator 2021.0.6, unmodified) and the kit's runners as subprocesses;
* :mod:`abt.evaluation.scores` — ``test.predicted-scores.json`` -> tidy rows / a DataFrame;
* ``hear_compat/`` — the shim directory put on ``PYTHONPATH`` of that venv only (tensorflow stub,
  ``sitecustomize`` -> ``hear_compat`` patches). Never import it from the main environment.

The HEAR API module itself is :mod:`abt.hear`.
"""

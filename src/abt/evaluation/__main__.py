"""``python -m abt.evaluation ARGS`` is ``abt hear ARGS`` (:mod:`abt.evaluation.commands`)."""

import sys

from abt.evaluation.commands import main

if __name__ == "__main__":
    sys.exit(main())

import sys

from abt.cli import main

sys.exit(main())

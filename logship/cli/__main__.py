"""`python -m logship.cli`: the same as the `logship` command."""
import sys

from .main import main

sys.exit(main())

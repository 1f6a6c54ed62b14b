"""``python -m minidl.cli``: the same as the ``minidl`` command."""
import sys

from . import main

sys.exit(main())

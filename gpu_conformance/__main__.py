"""``python -m gpu_conformance`` is the ``gpu-conformance`` command."""

import sys

from gpu_conformance.cli import main

sys.exit(main())

"""``python -m mmgraph`` runs the command line."""

import sys

from mmgraph.cli import main

sys.exit(main())

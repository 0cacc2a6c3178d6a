"""``python -m mmgraph`` runs the command line."""

import sys

from mmgraph.launch import main

sys.exit(main())

"""mmgraph: multimodal recommendation as a first-class citizen of PyTorch Geometric.

Layers, bottom to top (a module never imports from a layer above it):
``mmgraph.data`` -> ``mmgraph.nn`` -> ``mmgraph.models`` -> ``mmgraph.eval`` ->
``mmgraph.train`` -> ``mmgraph.plot`` -> ``mmgraph.serve`` -> ``mmgraph.cli``.
"""

import warnings

__version__ = "0.1.0"

# torch warns once per process that sparse CSR support is "beta"; the CSR operations mmgraph
# uses (construction, CSR @ dense) are stable, and the warning only confuses users.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")

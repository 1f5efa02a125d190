"""Small torch helpers shared by the neural models."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch


def resolve_device(requested: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return requested


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """Losses are computed in float32 or wider, whatever precision autocast ran the forward pass in."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _sparse_tensor(matrix: sp.csr_matrix, values: np.ndarray) -> torch.Tensor:
    """Sparse COO tensor with `matrix`'s pattern and the given values (one per stored entry, in CSR order)."""
    coo = sp.csr_matrix((values, matrix.indices, matrix.indptr), shape=matrix.shape).tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(
        indices, torch.from_numpy(coo.data.astype(np.float32)), size=matrix.shape, check_invariants=False
    )


def _binary_pattern(matrix: sp.csr_matrix) -> sp.csr_matrix:
    binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    binary.eliminate_zeros()
    return binary


def binary_csr(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """float32 CSR of the rows with every stored positive entry set to 1 (for products that stay in scipy)."""
    binary = _binary_pattern(matrix)
    binary.data[:] = 1.0
    return binary


def dense_scores(scores: sp.csr_matrix, device: str) -> torch.Tensor:
    """A chunk's scores computed in scipy as a dense float32 tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(scores.toarray(), dtype=np.float32)).to(device)


def csr_rows_to_dense(matrix: sp.csr_matrix, device: str) -> torch.Tensor:
    """Dense float32 tensor of a (small) block of CSR rows, built on the target device."""
    return _sparse_tensor(matrix, matrix.data).to(device).to_dense()


def normalized_binary_rows(matrix: sp.csr_matrix, device: str) -> torch.Tensor:
    """Sparse COO tensor of the rows binarised and L2-normalised (what `F.normalize` does to a 0/1 row)."""
    binary = _binary_pattern(matrix)
    counts = np.diff(binary.indptr)
    values = np.repeat(1.0 / np.sqrt(np.maximum(counts, 1)), counts)
    return _sparse_tensor(binary, values).coalesce().to(device)


def binary_rows_tensor(matrix: sp.csr_matrix, device: str) -> torch.Tensor:
    """Sparse COO tensor of the rows with every stored positive entry set to 1."""
    binary = _binary_pattern(matrix)
    return _sparse_tensor(binary, np.ones(binary.nnz, dtype=np.float32)).coalesce().to(device)


def sparse_normalize_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """`F.dropout(F.normalize(x, dim=1), p)` for a sparse COO batch of binary rows, staying sparse."""
    x = x.coalesce()
    rows = x.indices()[0]
    counts = torch.bincount(rows, minlength=x.shape[0]).clamp(min=1)
    values = torch.nn.functional.dropout(counts[rows].float().rsqrt(), p=p, training=training)
    return torch.sparse_coo_tensor(x.indices(), values, x.shape, check_invariants=False, is_coalesced=True)


def row_sums(x: torch.Tensor) -> torch.Tensor:
    """Each row's sum of a dense or sparse COO [rows, items] tensor, as a dense vector."""
    return torch.sparse.sum(x, dim=1).to_dense() if x.is_sparse else x.sum(dim=1)

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


def csr_rows_to_dense(matrix: sp.csr_matrix, device: str) -> torch.Tensor:
    """Dense float32 tensor of a (small) block of CSR rows, built on the target device."""
    coo = matrix.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data.astype(np.float32))
    sparse = torch.sparse_coo_tensor(indices, values, size=matrix.shape, check_invariants=False)
    return sparse.to(device).to_dense()


def normalized_binary_rows(matrix: sp.csr_matrix, device: str) -> torch.Tensor:
    """Sparse COO tensor of the rows binarised and L2-normalised (what `F.normalize` does to a 0/1 row)."""
    binary = matrix.copy()
    binary.eliminate_zeros()
    counts = np.diff(binary.indptr)
    binary.data = np.repeat(1.0 / np.sqrt(np.maximum(counts, 1)), counts).astype(np.float32)
    coo = binary.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    values = torch.from_numpy(coo.data)
    return torch.sparse_coo_tensor(indices, values, size=matrix.shape, check_invariants=False).coalesce().to(device)


def binary_rows_tensor(matrix: sp.csr_matrix, device: str) -> torch.Tensor:
    """Sparse COO tensor of the rows with every stored positive entry set to 1."""
    binary = matrix.copy()
    binary.eliminate_zeros()
    binary.data = np.ones_like(binary.data, dtype=np.float32)
    coo = binary.tocoo()
    indices = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
    return torch.sparse_coo_tensor(indices, torch.from_numpy(coo.data), size=matrix.shape,
                                   check_invariants=False).coalesce().to(device)

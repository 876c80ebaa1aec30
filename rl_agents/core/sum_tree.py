"""A vectorized sum tree: sampling proportional to priorities in O(log n) per draw (Schaul et al. 2016).

Leaves hold the priorities; every internal node holds the sum of its two children, so the root holds
the total. Updates and searches take whole batches of indices at once, one numpy operation per tree
level, instead of one Python loop per index.

Every internal node is recomputed from its children after they change, so the tree is a function of
its leaves alone: :meth:`SumTree.rebuild` from saved leaves gives bit-identical sums (checkpoints keep
only the leaves).
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Args: size: the number of leaves (priorities), all 0 at first."""

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"a sum tree needs at least one leaf, got {size}")
        self.size = size
        self.first_leaf = 1 << max(size - 1, 0).bit_length()  # a power of two >= size; node 1 is the root
        self.nodes = np.zeros(2 * self.first_leaf, dtype=np.float64)
        self.depth = self.first_leaf.bit_length() - 1

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    @property
    def leaves(self) -> np.ndarray:
        """A view of the ``size`` priorities."""
        return self.nodes[self.first_leaf : self.first_leaf + self.size]

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.nodes[self.first_leaf + indices]

    def set(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set leaves ``indices`` to ``priorities`` (>= 0); where an index repeats, its last value wins."""
        indices = np.asarray(indices, dtype=np.int64)
        priorities = np.broadcast_to(np.asarray(priorities, dtype=np.float64), indices.shape)
        if indices.size == 0:
            return
        # Keep the last occurrence of each index: numpy does not promise which repeated assignment wins.
        reversed_unique, first_in_reversed = np.unique(indices[::-1], return_index=True)
        nodes = self.first_leaf + reversed_unique
        self.nodes[nodes] = priorities[::-1][first_in_reversed]
        parents = nodes >> 1
        for _ in range(self.depth):  # every leaf is at the same depth: one level of parents at a time
            # A parent listed twice is written twice with the same sum: cheaper than deduplicating.
            self.nodes[parents] = self.nodes[2 * parents] + self.nodes[2 * parents + 1]
            parents = parents >> 1

    def rebuild(self) -> None:
        """Recompute every internal node from the leaves, level by level."""
        start = self.first_leaf
        while start > 1:
            parents = slice(start // 2, start)
            self.nodes[parents] = self.nodes[start : 2 * start : 2] + self.nodes[start + 1 : 2 * start : 2]
            start //= 2

    def find(self, targets: np.ndarray) -> np.ndarray:
        """For each target mass in ``[0, total)``, the leaf where the running sum of the leaves passes it.

        Only leaves with a positive priority are returned, whatever rounding does to the targets: the
        search descends into the right child only when it holds mass, and into the left one only when
        it does."""
        if not self.total > 0:
            raise ValueError("cannot sample a sum tree whose priorities are all 0")
        remaining = np.asarray(targets, dtype=np.float64).copy()
        node = np.ones(remaining.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = self.nodes[2 * node]
            right = self.nodes[2 * node + 1]
            go_right = ((remaining >= left) & (right > 0)) | (left <= 0)
            remaining -= np.where(go_right, left, 0.0)
            node = 2 * node + go_right
        return node - self.first_leaf

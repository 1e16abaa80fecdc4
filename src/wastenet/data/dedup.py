"""Near-duplicate detection that sees through flips and quarter turns.

Each image gets the 64-bit perceptual hash (imagehash ``phash``) of its 8 dihedral
variants (4 rotations x mirror). The distance between two images is the smallest
Hamming distance between any variant of one and the plain hash of the other, so a
flipped or rotated copy is as close as an identical one. All pairs are compared
bit-parallel with numpy (xor + popcount) in blocks; pairs within the threshold are
joined into groups (union-find) that the splitter keeps in a single split.
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 6  # bits out of 64
_BLOCK = 128


def _bits_to_int(bits: np.ndarray) -> int:
    return int.from_bytes(np.packbits(bits.astype(bool).ravel()).tobytes(), "big")


def dihedral_variants(a: np.ndarray) -> list[np.ndarray]:
    """The 8 images of the dihedral group: rot 0/90/180/270, each also mirrored."""
    out = []
    for k in range(4):
        r = np.rot90(a, k)
        out.extend((r, r[:, ::-1]))
    return out


def dihedral_phashes(rgb: np.ndarray) -> np.ndarray:
    """(2, 8) uint64: phash and dhash of the 8 dihedral variants; variant 0 is as stored.

    dhash needs a 9x8 grid, so it is taken from a square 9x9 thumbnail whose dihedral
    variants are exact; both hashes must agree for a near-duplicate, which rejects the
    many plain-background photos whose phash alone looks alike.
    """
    import imagehash
    from PIL import Image

    gray = Image.fromarray(rgb).convert("L")
    p32 = np.asarray(gray.resize((32, 32), Image.Resampling.LANCZOS))
    d9 = np.asarray(gray.resize((9, 9), Image.Resampling.LANCZOS))
    phashes = [
        _bits_to_int(imagehash.phash(Image.fromarray(np.ascontiguousarray(v))).hash)
        for v in dihedral_variants(p32)
    ]
    dhashes = [_bits_to_int(v[:8, 1:] > v[:8, :-1]) for v in dihedral_variants(d9.astype(np.int16))]
    return np.array([phashes, dhashes], dtype=np.uint64)


def canonical_hash(phashes: np.ndarray) -> int:
    """The smallest of the 8 variant phashes: one rotation/flip-invariant fingerprint."""
    return int(np.min(np.asarray(phashes, dtype=np.uint64).reshape(-1, 8)[0]))


def near_duplicate_pairs(hashes: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
    """All pairs (i < j, distance) whose dihedral Hamming distance is <= threshold.

    ``hashes`` is (N, 8) uint64 (one hash kind) or (N, K, 8) (K kinds, e.g. phash and
    dhash): a pair's distance under a variant is the largest over the kinds, and the
    pair's distance is the smallest over the 8 variants. Returns (M, 3) (i, j, distance).
    """
    hashes = np.asarray(hashes, dtype=np.uint64)
    if hashes.ndim == 2:
        hashes = hashes[:, None, :]
    n = len(hashes)
    if n < 2:
        return np.zeros((0, 3), dtype=np.int64)
    plain = hashes[:, :, 0]  # (N, K)
    found = []
    for start in range(0, n, _BLOCK):
        block = hashes[start : start + _BLOCK]  # (B, K, 8)
        dist = None
        for k in range(hashes.shape[1]):
            xor = block[:, k, :, None] ^ plain[None, None, :, k]  # (B, 8, N)
            d = np.bitwise_count(xor)
            dist = d if dist is None else np.maximum(dist, d)
        dist = dist.min(axis=1)  # (B, N)
        rows, cols = np.nonzero(dist <= threshold)
        rows = rows + start
        keep = cols > rows
        rows, cols = rows[keep], cols[keep]
        found.append(np.stack([rows, cols, dist[rows - start, cols]], axis=1))
    return np.concatenate(found).astype(np.int64)


def group_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find over pairs: a group id per item (the smallest index in its group)."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j, _ in pairs:
        ri, rj = find(int(i)), find(int(j))
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n)])


def duplicate_groups(groups: np.ndarray) -> list[list[int]]:
    """Groups with more than one member, each sorted, in order of first member."""
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(int(g), []).append(i)
    return [m for _, m in sorted(members.items()) if len(m) > 1]

"""How long does safe loading cost?  Times the loaders on a real-size file.

Writes bvlc_alexnet-sized random weights (61M float32 parameters, ~244 MB)
in the Toronto ``.npy`` layout and as ``.npz`` to a temporary folder, then
prints the best of a few load times for

* a plain ``np.load(allow_pickle=True)`` -- fast, but runs any code in the file,
* ``weights.read_weights`` on the same ``.npy`` -- the restricted unpickler,
* ``weights.read_weights`` on the ``.npz`` -- no pickle at all,

and the ratio safe / plain, which should stay at or below 1.5.

    python benchmarks/bench_weights.py [--repeats 5]
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)
from weights import ALEXNET_SHAPES, read_weights, save_npz, save_toronto_npy  # noqa: E402


def random_alexnet(seed=0):
    """bvlc_alexnet-shaped float32 weights with random values."""
    rng = np.random.default_rng(seed)
    return {name: {part: rng.standard_normal(shape, dtype=np.float32)
                   for part, shape in parts.items()}
            for name, parts in ALEXNET_SHAPES.items()}


def plain_np_load(path):
    """What most AlexNet tutorials do (and what a hostile file exploits)."""
    return np.load(path, allow_pickle=True, encoding='latin1').item()


def best_times(loaders, repeats):
    """Best wall time of each loader; rounds interleave the loaders so that
    disk cache and CPU frequency affect them alike."""
    best = {name: float('inf') for name in loaders}
    for _ in range(repeats):
        for name, load in loaders.items():
            start = time.perf_counter()
            load()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        npy = os.path.join(folder, 'bvlc_alexnet.npy')
        npz = os.path.join(folder, 'bvlc_alexnet.npz')
        layers = random_alexnet()
        save_toronto_npy(layers, npy)
        save_npz(layers, npz)
        del layers
        print(f'file size: .npy {os.path.getsize(npy) / 1e6:.0f} MB, '
              f'.npz {os.path.getsize(npz) / 1e6:.0f} MB')
        best = best_times({
            'np.load(allow_pickle=True) .npy': lambda: plain_np_load(npy),
            'read_weights .npy (restricted)': lambda: read_weights(npy),
            'read_weights .npz': lambda: read_weights(npz),
        }, args.repeats)
    for name, seconds in best.items():
        print(f'{name:34s} {seconds:7.3f} s')
    plain, safe = list(best.values())[:2]
    print(f'ratio safe/plain (.npy): {safe / plain:.2f} (limit 1.5)')


if __name__ == '__main__':
    main()

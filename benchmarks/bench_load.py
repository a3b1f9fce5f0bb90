"""How fast do the ImageNet weights get into the graph, and at what cost?

Writes a real-size bvlc_alexnet.npy with random values (61M parameters,
~244 MB) and loads it two ways, each into a fresh graph:

* the original: kratzert's AlexNet graph and its
  `session.run(var.assign(data))`, which puts every array into the graph
  as a constant (original_alexnet.py);
* the kit: alexnet.AlexNet and its `load_initial_weights`, which feeds the
  arrays into the variables.

For each it prints the wall time (reading the file included) and the size of
the serialized graph afterwards. Targets: <= 3 s and < 1 MB.

    python benchmarks/bench_load.py
"""
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)

from alexnet import AlexNet, tf  # noqa: E402
from bench_weights import random_alexnet  # noqa: E402
from original_alexnet import OriginalAlexNet  # noqa: E402
from weights import save_toronto_npy  # noqa: E402

#: The two ways: the network class whose weights are loaded.
METHODS = {'original': OriginalAlexNet, 'fed': AlexNet}


def measure(method, path):
    """(seconds, graph bytes) of loading `path` into a fresh graph of the
    `method`'s network ('original' or 'fed'), fc8 skipped as in the course.
    """
    tf.reset_default_graph()
    # A graph seed lets the random initialisers run in a process where the
    # kit has turned on TensorFlow's determinism (sgd.make_deterministic),
    # which refuses random ops without one.
    tf.set_random_seed(0)
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    model = METHODS[method](x, 1.0, 102, ['fc8'], path)
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        start = time.perf_counter()
        model.load_initial_weights(session)
        seconds = time.perf_counter() - start
        size = tf.get_default_graph().as_graph_def().ByteSize()
    return seconds, size


def main():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'bvlc_alexnet.npy')
        save_toronto_npy(random_alexnet(), path)
        print('weights file: %.1f MB, %d CPU cores'
              % (os.path.getsize(path) / 1e6, os.cpu_count()))
        print('%-40s %8s %12s' % ('method', 'seconds', 'graph size'))
        for method, name in (
                ('original', 'original: session.run(var.assign())'),
                ('fed', 'kit: load_initial_weights (fed)')):
            seconds, size = measure(method, path)
            print('%-40s %8.2f %9.2f MB' % (name, seconds, size / 1e6))


if __name__ == '__main__':
    main()

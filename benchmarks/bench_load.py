"""How fast do the ImageNet weights get into the graph, and at what cost?

Writes a real-size bvlc_alexnet.npy with random values (61M parameters,
~244 MB) and loads it into a fresh AlexNet graph two ways:

* the original's `session.run(var.assign(data))`, which puts every array
  into the graph as a constant;
* `AlexNet.load_initial_weights`, which feeds the arrays into the variables.

For each it prints the wall time (reading the file included) and the size of
the serialized graph afterwards. Targets: <= 3 s and < 1 MB.

    python tools/bench_load.py
"""
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from alexnet import AlexNet, LAYERS, tf, variable  # noqa: E402
from bench_weights import random_alexnet  # noqa: E402
from weights import save_toronto_npy  # noqa: E402


def original_assign(model, session):
    """kratzert's load_initial_weights: one assign op (a constant) per array."""
    data = np.load(model.WEIGHTS_PATH, allow_pickle=True, encoding='latin1').item()
    for layer in LAYERS:
        if layer in model.SKIP_LAYER:
            continue
        weights, biases = data[layer]
        session.run(variable(layer, 'weights').assign(weights))
        session.run(variable(layer, 'biases').assign(biases))


def fed(model, session):
    model.load_initial_weights(session)


def measure(load, path):
    """(seconds, graph bytes) of one load into a fresh graph and session."""
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    model = AlexNet(x, 1.0, 102, ['fc8'], path)
    with tf.Session() as session:
        session.run(tf.global_variables_initializer())
        start = time.perf_counter()
        load(model, session)
        seconds = time.perf_counter() - start
        size = tf.get_default_graph().as_graph_def().ByteSize()
    return seconds, size


def main():
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'bvlc_alexnet.npy')
        save_toronto_npy(random_alexnet(), path)
        print('weights file: %.1f MB, %d CPU cores'
              % (os.path.getsize(path) / 1e6, os.cpu_count()))
        print('%-36s %8s %12s' % ('method', 'seconds', 'graph size'))
        for name, load in (('original: session.run(var.assign())', original_assign),
                           ('load_initial_weights (fed)', fed)):
            seconds, size = measure(load, path)
            print('%-36s %8.2f %9.2f MB' % (name, seconds, size / 1e6))


if __name__ == '__main__':
    main()

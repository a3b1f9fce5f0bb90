"""How fast is one training step on a CPU, and what makes it so?

    python benchmarks/bench_cpu_step.py                # batch 16 and 64
    python benchmarks/bench_cpu_step.py --batch_sizes 16 --json out.json

Every all-layer step of finetune.py's graph (uint8 pixels in, AlexNet,
Caffe's SGD on every layer), timed in four settings, each in a child process
of its own so that its peak memory is its own:

oneDNN       TF_ENABLE_ONEDNN_OPTS=1 (what alexnet.py sets unless you do)
             against 0 (what TensorFlow 2.x does by itself on CPUs without
             AVX-512 VNNI, such as AMD EPYC before Zen 4).
optimizer    sgd.CaffeMomentumOptimizer (TensorFlow's fused momentum
             kernel) against the same update written as element-wise ops
             (elementwise_caffe_momentum below, the kit's form until
             2026-11-28): the numbers are the same, the passes over memory
             are not.

Images/s is the best of three rounds of a few steps after a warm-up; the
memory is the child's peak resident size (ru_maxrss).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from bench_report import machine  # noqa: E402


def elementwise_caffe_momentum(tf, learning_rate, momentum):
    """The baseline optimizer: v = m*v + lr*g; w -= v as separate
    element-wise ops (made once TensorFlow is imported, in the child)."""
    class ElementwiseCaffeMomentum(tf.train.Optimizer):
        def __init__(self):
            super(ElementwiseCaffeMomentum, self).__init__(False, 'CaffeSGD')

        def _create_slots(self, var_list):
            for var in var_list:
                self._zeros_slot(var, 'momentum', self._name)

        def _apply(self, grad, var):
            v = self.get_slot(var, 'momentum')
            new_v = tf.assign(v, momentum * v + learning_rate * grad)
            return tf.assign_sub(var, new_v)
        _apply_dense = _resource_apply_dense = _apply
    return ElementwiseCaffeMomentum()


def child(batch_size, optimizer_name, steps=4, rounds=3):
    """Run in the child: time steps, print one JSON line."""
    sys.path.insert(0, ROOT)
    import numpy as np
    from alexnet import LAYERS, AlexNet, tf
    from datagenerator import IMAGENET_MEAN_BGR
    from sgd import caffe_sgd, session_config, set_rate_multipliers
    pixels = tf.placeholder(tf.uint8, [None, 227, 227, 3])
    x = tf.cast(pixels, tf.float32) - IMAGENET_MEAN_BGR
    y = tf.placeholder(tf.float32, [None, 102])
    model = AlexNet(x, 0.5, 102, list(LAYERS), 'unused.npy')
    loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(
        logits=model.fc8, labels=y))
    optimizer = (None if optimizer_name == 'fused' else
                 elementwise_caffe_momentum(tf, 0.001, 0.9))
    train_op = caffe_sgd(loss, model, list(LAYERS), 0.001, 0.9, 0.0005,
                         optimizer=optimizer)
    rng = np.random.default_rng(0)
    feed = {pixels: rng.integers(0, 256, (batch_size, 227, 227, 3),
                                 dtype=np.uint8),
            y: np.eye(102)[rng.integers(0, 102, batch_size)]}
    with tf.Session(config=session_config()) as sess:
        sess.run(tf.global_variables_initializer())
        set_rate_multipliers(sess, model)
        for _ in range(2):  # warm-up: kernels chosen, memory allocated
            sess.run(train_op, feed)
        best = float('inf')
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(steps):
                sess.run(train_op, feed)
            best = min(best, (time.perf_counter() - start) / steps)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({'images_per_s': batch_size / best, 'peak_mb': peak_mb}))


def measure(batch_size, onednn, optimizer_name):
    env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn,
               TF_CPP_MIN_LOG_LEVEL='3')
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), '--child',
         str(batch_size), optimizer_name], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, universal_newlines=True)
    if done.returncode != 0:
        raise RuntimeError('child failed:\n' + done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch_sizes', default='16,64')
    parser.add_argument('--json', help='also write the figures here')
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(int(args.child[0]), args.child[1])
    print('Machine: %s' % machine())
    figures = []
    for batch_size in [int(b) for b in args.batch_sizes.split(',')]:
        for onednn in ('0', '1'):
            for optimizer_name in ('elementwise', 'fused'):
                result = measure(batch_size, onednn, optimizer_name)
                result.update(batch_size=batch_size, onednn=onednn,
                              optimizer=optimizer_name)
                figures.append(result)
                print('batch %3d  oneDNN %s  %-11s  %6.1f images/s  peak '
                      '%5.0f MB' % (batch_size, onednn, optimizer_name,
                                    result['images_per_s'],
                                    result['peak_mb']), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=1)


if __name__ == '__main__':
    main()

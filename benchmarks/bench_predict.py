"""Peak memory of predict.py --ten_crop on 10 images and on 300.

predict.py reads, runs and prints the images a chunk at a time, so its
peak memory must not grow with the number of images: the target is at most
1.25 times the peak of 10 images for 300. (Before, every view of every
image was stacked first: 200 images with --ten_crop took 3.7 GB.)

The benchmark writes 300 JPEG pictures of 500x375 pixels (the size of an
Oxford flower) and a checkpoint of random weights (102 classes) into a
temporary folder, runs predict.py on the first 10 and on all of them, each
in a child process, and prints the peak resident memory of each child (its
ru_maxrss, from os.wait4) and their ratio.

    python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --images 1000 --script old/predict.py

This process itself imports nothing heavy: a child inherits its parent's
memory until it starts the new program, and that would count in its peak.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The images of the small run.
FEW = 10


def prepare(folder, count):
    """Write `count` pictures into folder/images and a checkpoint of random
    weights into folder/run (in a child process: it imports TensorFlow)."""
    sys.path.insert(0, ROOT)
    import cv2
    import numpy as np
    from alexnet import AlexNet, LAYERS, tf

    rng = np.random.default_rng(0)
    os.makedirs(os.path.join(folder, 'images'))
    for i in range(count):
        picture = cv2.GaussianBlur(
            rng.integers(0, 256, (375, 500, 3), dtype=np.uint8), (9, 9), 3)
        cv2.imwrite(os.path.join(folder, 'images', '%04d.jpg' % i), picture)
    with tf.Graph().as_default():
        tf.set_random_seed(0)
        AlexNet(tf.placeholder(tf.float32, [None, 227, 227, 3]), 1.0, 102,
                LAYERS)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, os.path.join(folder, 'run', 'best'))


def peak_memory(command):
    """(peak resident memory in MB, seconds) of a child process that runs
    `command`; stops the benchmark if the command fails."""
    start = time.time()
    with tempfile.TemporaryFile() as errors:
        # The kit's modules for a --script elsewhere (an older version).
        path = os.pathsep.join([ROOT, os.environ.get('PYTHONPATH', '')])
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                 stderr=errors,
                                 env=dict(os.environ, PYTHONPATH=path))
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.WEXITSTATUS(status)  # reaped here, not by Popen
        if not os.WIFEXITED(status) or child.returncode:
            errors.seek(0)
            sys.exit('%s failed:\n%s' % (' '.join(command),
                                         errors.read().decode()[-2000:]))
    # ru_maxrss: kilobytes on Linux, bytes on macOS.
    scale = 1e6 if sys.platform == 'darwin' else 1e3
    return usage.ru_maxrss / scale, time.time() - start


def main():
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--images', type=int, default=300,
                        help='images of the large run (default: 300)')
    parser.add_argument('--script', default=os.path.relpath(
                            os.path.join(ROOT, 'predict.py')),
                        help='the predict.py to measure')
    parser.add_argument('--prepare', metavar='FOLDER', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.prepare:  # the child that writes the images and the checkpoint
        prepare(args.prepare, args.images)
        return
    if args.images <= FEW:
        parser.error('--images must be more than %d' % FEW)
    folder = tempfile.mkdtemp(prefix='bench_predict_')
    try:
        peak_memory([sys.executable, os.path.abspath(__file__),
                     '--images', str(args.images), '--prepare', folder])
        images = sorted(os.path.join(folder, 'images', name)
                        for name in os.listdir(os.path.join(folder, 'images')))
        peaks = {}
        for count in (FEW, args.images):
            peaks[count], seconds = peak_memory(
                [sys.executable, args.script, '--ten_crop', '--checkpoint',
                 os.path.join(folder, 'run')] + images[:count])
            print('%s --ten_crop, %4d images: peak %5.0f MB, %5.1f s'
                  % (args.script, count, peaks[count], seconds))
        print('ratio %d/%d images: %.2f (target: at most 1.25)'
              % (args.images, FEW, peaks[args.images] / peaks[FEW]))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == '__main__':
    main()

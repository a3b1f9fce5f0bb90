"""Would a GPU wait for the kit's loaders? The feed against the appetite.

    python benchmarks/bench_gpu_feed.py                 # real photos if found
    python benchmarks/bench_gpu_feed.py --images 600 --json out.json

Two figures, measured on the same machine in the same run:

feed      images/s that ImageDataGenerator delivers for training (random
          crops and mirrors, uint8 batches of 128, no image cache: the
          first epoch, the slowest), with 1, 2, 4, ... decoding threads up
          to the machine's cores, OpenCV and Pillow. Later epochs come from
          the image cache: measured too ("cached"), beside OpenCV's
          decoding alone, the ceiling of a first epoch without the kit's
          checks of each file.
appetite  images/s one training step of AlexNet consumes on the GPU:
          forward, backward and a momentum update at batch 128, float32
          (TF32 matrix units allowed, as TensorFlow allows them by default),
          the uint8 batch copied from the host each step as the kit feeds
          it. Measured with PyTorch where TensorFlow cannot be installed
          (the lent GPU machines have no TensorFlow and no network): the
          same layers, shapes and groups as alexnet.py (Caffe's
          bvlc_alexnet), so the arithmetic matches; TensorFlow's own step
          overhead (feed_dict, session) is not in it. Skipped without torch
          or a CUDA device.

The ratio feed / appetite says how many images the loader makes per image
the GPU can eat: at or above 1 the GPU never waits (finetune.py overlaps
decoding with the step); below 1 the cache of later epochs must make up.
Needs only numpy, OpenCV, Pillow (and torch for the appetite): no
TensorFlow.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)

from bench_loaders import list_paths, training_list  # noqa: E402
from bench_report import machine  # noqa: E402
from datagenerator import ImageDataGenerator  # noqa: E402

BATCH = 128


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def thread_counts(limit):
    """1, 2, 4, ... up to `limit`, and `limit` itself."""
    counts, n = [], 1
    while n < limit:
        counts.append(n)
        n *= 2
    return counts + [limit]


def feed_rate(list_file, loader, workers, cached=False):
    """Images/s of one training epoch of batches of 128: the first epoch
    (decoding every image), or with `cached` a later one (the resized
    images from the in-memory image cache, crops and mirrors drawn anew)."""
    generator = ImageDataGenerator(
        list_file, horizontal_flip=True, shuffle=True, mean=None,
        num_classes=102, loader=loader, seed=0, workers=workers,
        cache='memory' if cached else None)
    if cached:  # the first epoch fills the cache
        for _ in generator.batches(BATCH):
            pass
        generator.reset_pointer()
    start = time.perf_counter()
    images = sum(len(batch[0]) for batch in generator.batches(BATCH))
    return images / (time.perf_counter() - start)


def decode_only_rate(paths, workers):
    """Images/s of OpenCV alone (reduced decoding and the resize to 256x256,
    as load_image does them) in `workers` threads: the ceiling of the first
    epoch without the kit's checks of each file."""
    import cv2
    from concurrent.futures import ThreadPoolExecutor

    def load(path):
        image = cv2.imdecode(np.fromfile(path, np.uint8),
                             cv2.IMREAD_REDUCED_COLOR_2)
        return cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        list(pool.map(load, paths))
        return len(paths) / (time.perf_counter() - start)


def caffe_alexnet(torch, num_classes=102):
    """bvlc_alexnet's layers in PyTorch (conv2, conv4, conv5 in 2 groups;
    LocalResponseNorm divides alpha by the window as Caffe does)."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(),
        nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(),
        nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(),
        nn.MaxPool2d(3, 2), nn.Flatten(),
        nn.Linear(6 * 6 * 256, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, num_classes))


def gpu_appetite(steps=60, warmup=10):
    """(images/s of training steps at batch 128, device name), or
    (None, why) without torch or CUDA."""
    try:
        import torch
    except ImportError:
        return None, 'no torch'
    if not torch.cuda.is_available():
        return None, 'no CUDA device'
    torch.backends.cuda.matmul.allow_tf32 = True  # TensorFlow's default
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    device = torch.device('cuda')
    model = caffe_alexnet(torch).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9,
                                weight_decay=5e-4)
    mean = torch.tensor([104.007, 116.669, 122.679],
                        device=device).view(1, 3, 1, 1)
    # One uint8 batch in host memory, copied each step as a feed is.
    pixels = torch.randint(0, 256, (BATCH, 227, 227, 3), dtype=torch.uint8)
    labels = torch.randint(0, 102, (BATCH,), device=device)

    def step():
        x = pixels.to(device).permute(0, 3, 1, 2).float() - mean
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    rate = steps * BATCH / (time.perf_counter() - start)
    return rate, torch.cuda.get_device_name(0)


def scan_only_rate(paths, workers):
    """Images/s of the corrupt-JPEG check alone (jpegscan.ScanCheck: the
    structure walk and Pillow's quick decode at 1/8 scale) in `workers`
    threads: does it scale with threads, or hold Python's lock?"""
    import jpegscan
    from concurrent.futures import ThreadPoolExecutor
    datas = [np.fromfile(path, np.uint8) for path in paths]
    with ThreadPoolExecutor(workers) as pool:
        start = time.perf_counter()
        list(pool.map(lambda data: jpegscan.ScanCheck(data).decode(), datas))
        return len(datas) / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--images', type=int, default=512,
                        help='photos in the feed epoch (default 512)')
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args()

    figures = {'machine': machine(),
               'cores': cores(), 'batch_size': BATCH}
    appetite, device = gpu_appetite()
    figures.update(appetite_images_per_s=appetite, device=device)
    print('appetite: %s on %s' % (
        'n/a' if appetite is None else '%.0f images/s' % appetite, device))

    with tempfile.TemporaryDirectory() as folder:
        list_file, what = training_list(folder, args.images)
        for path in list_paths(list_file):  # the files in the disk cache
            with open(path, 'rb') as f:
                f.read()
        figures['images'] = what
        print('feed: %s, %d cores' % (what, figures['cores']))
        feed = {}
        for loader in ('opencv', 'pil'):
            for workers in thread_counts(figures['cores']):
                rate = max(feed_rate(list_file, loader, workers)
                           for _ in range(2))  # the better of two
                feed['%s/%d' % (loader, workers)] = rate
                ratio = ('' if appetite is None else
                         '  feed/appetite %.2f' % (rate / appetite))
                print('  %-6s %2d threads %7.0f images/s%s'
                      % (loader, workers, rate, ratio), flush=True)
        figures['feed_images_per_s'] = feed
        for workers in thread_counts(figures['cores']):
            rate = max(feed_rate(list_file, 'opencv', workers, cached=True)
                       for _ in range(2))
            feed['cached/%d' % workers] = rate
            ceiling = decode_only_rate(list_paths(list_file), workers)
            feed['decode_only/%d' % workers] = ceiling
            scan = max(scan_only_rate(list_paths(list_file), workers)
                       for _ in range(2))
            feed['scan_only/%d' % workers] = scan
            print('  cached %2d threads %7.0f images/s%s | OpenCV decoding '
                  'alone %5.0f images/s | the JPEG check alone %5.0f '
                  'images/s' % (
                      workers, rate, '' if appetite is None else
                      '  feed/appetite %.2f' % (rate / appetite), ceiling,
                      scan), flush=True)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(figures, f, indent=1)


if __name__ == '__main__':
    main()

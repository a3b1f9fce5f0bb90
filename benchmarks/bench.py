"""Does AlexNet ever wait for data? Every part of the input pipeline, each
beside its baseline measured in the same run.

    python tools/bench.py                   # a few minutes on a 2-core CPU
    python tools/bench.py --quick           # under a minute: fewer images
    python tools/bench.py --json out.json   # the figures as JSON too

What it measures, on the real Oxford 102 images (`../shared/data/oxford102`
or $FLOWERS_DIR; generated 500x667 JPEGs when they are absent):

loaders       images/s of load_image on one thread, OpenCV and Pillow,
              reduced against full decoding; on the real photos (decoded at
              1/2), and on 2x-enlarged copies of them (1000x1334, at 1/4). The mean absolute difference of the final arrays
              against full decoding (0..255) is the quality cost.
              Batches from the image cache against decoding them.
training      images/s of training steps, all layers and fc6-fc8 only, at
              batch 64 and 128: the prefetching pipeline against the
              original pattern (decode a batch on one thread, then step;
              the same graph, only the loading differs), and the share of
              the epoch spent waiting for data.
epochs        fc8-only epochs with the feature cache against without;
              all-layer epochs with the image cache against without.
weights       loading the ImageNet weights (a random file of the real size)
              by feeding them against the original constant assign: time
              and graph size (tools/bench_load.py).
memory        peak resident memory of each configuration above: each runs in
              a child process of its own and reports its own peak (the
              kernel's ru_maxrss). `--quick` runs them all in one child, so
              its memory figures are only the running maximum of one child
              for the training runs (and its figures are rough: few steps).

The networks start from random weights: the speed is the same as with the
ImageNet ones, and the benchmark needs no download. Targets on a 2-core CPU
are in TARGETS; the table marks each as met or MISSED.
"""
import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

TOOLS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS)
sys.path.insert(0, ROOT)
sys.path.insert(0, TOOLS)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from bench_weights import best_times, random_alexnet  # noqa: E402
from datagenerator import (ImageDataGenerator, default_workers,  # noqa: E402
                           load_image, reduction)
from weights import save_toronto_npy  # noqa: E402

NUM_CLASSES = 102
BATCH_SIZES = (64, 128)
TRAIN_LAYERS = {'all': ['conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc6',
                        'fc7', 'fc8'],
                'fc6-fc8': ['fc6', 'fc7', 'fc8'],
                'fc8': ['fc8']}

#: (figure, comparison, limit, what it says). The figures are named in
#: `summarise`.
TARGETS = [
    ('train.all.b64.prefetch.wait_share', '<=', 0.05,
     'data waiting <= 5% of an all-layer epoch at batch 64'),
    ('epoch.fc8.feature_cache_speedup', '>=', 20.0,
     'fc8-only epochs >= 20x faster with the feature cache'),
    ('loader.list.opencv.reduced_speedup', '>=', 1.5,
     'reduced decoding >= 1.5x full, OpenCV, the list\'s images'),
    ('loader.list.pil.reduced_speedup', '>=', 1.5,
     'reduced decoding >= 1.5x full, Pillow, the list\'s images'),
    ('quality.list.opencv.mad', '<', 3.0,
     'reduced decoding: mean abs. difference < 3.0, OpenCV'),
    ('quality.list.pil.mad', '<', 3.0,
     'reduced decoding: mean abs. difference < 3.0, Pillow'),
    ('memory.train.all.b128.prefetch', '<=', 2500.0,
     'peak memory <= 2.5 GB, all layers, batch 128, no image cache'),
]


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def flowers_dir():
    """$FLOWERS_DIR, or ../shared/data/oxford102 beside the project (as the
    tests look for it)."""
    return os.environ.get('FLOWERS_DIR') or os.path.join(
        os.path.dirname(ROOT), 'shared', 'data', 'oxford102')


def training_list(folder, count):
    """(list file, description): the first `count` images of trainfile.txt
    from the real image folder, or `count` generated 500x667 JPEGs."""
    jpg = os.path.join(flowers_dir(), 'jpg')
    lines = open(os.path.join(ROOT, 'trainfile.txt')).read().split('\n')
    lines = [line.split() for line in lines if line.strip()]
    if os.path.isdir(jpg):
        # Every 1020/count-th line: all classes, whatever the count.
        chosen = lines[::max(1, len(lines) // count)][:count]
        entries = [(os.path.join(jpg, os.path.basename(path)), label)
                   for path, label in chosen]
        what = 'real Oxford 102 photos (%d of trainfile.txt, %s)' % (
            len(entries), jpg)
    else:
        entries = generated_jpegs(os.path.join(folder, 'generated'), count)
        what = ('GENERATED 500x667 JPEGs (%d; no real images in %s)'
                % (len(entries), jpg))
    list_file = os.path.join(folder, 'train.txt')
    with open(list_file, 'w') as f:
        f.writelines('%s %s\n' % entry for entry in entries)
    return list_file, what


def generated_jpegs(folder, count):
    """`count` 500x667 JPEGs of the demo set's shapes; [(path, label)]."""
    import cv2
    from demo_data import draw_image
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i in range(count):
        path = os.path.join(folder, 'image_%05d.jpg' % i)
        cv2.imwrite(path, draw_image(i % 4, rng, size=(500, 667)))
        entries.append((path, i % NUM_CLASSES))
    return entries


def enlarged_copies(paths, folder):
    """JPEGs twice the size of `paths` (1000x1334 for Oxford, which decode
    at 1/4); written at quality 90."""
    import cv2
    os.makedirs(folder, exist_ok=True)
    copies = []
    for i, path in enumerate(paths):
        image = cv2.imread(path)
        copy = os.path.join(folder, 'large_%05d.jpg' % i)
        cv2.imwrite(copy, cv2.resize(image, None, fx=2, fy=2,
                                     interpolation=cv2.INTER_CUBIC),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        copies.append(copy)
    return copies


def list_paths(list_file):
    with open(list_file) as f:
        return [line.rsplit(None, 1)[0] for line in f if line.strip()]


# ---------------------------------------------------------------------------
# Loaders (in this process: no TensorFlow needed)
# ---------------------------------------------------------------------------


def loader_speeds(paths, loader, variants, repeats=2):
    """{variant: images per second of load_image on one thread} for the
    `reduce` settings in `variants` {name: reduce}. The best of `repeats`
    rounds, the variants taking turns, so that the disk cache and the CPU's
    clock speed treat them alike."""
    for path in paths:  # read the files once, so no variant pays the disk
        with open(path, 'rb') as f:
            f.read()

    def loading(reduce):
        return lambda: [load_image(path, loader, reduce=reduce)
                        for path in paths]
    best = best_times({name: loading(reduce)
                       for name, reduce in variants.items()}, repeats)
    return {name: len(paths) / seconds for name, seconds in best.items()}


def decoding_difference(paths, loader, reduce):
    """(mean absolute difference of the final arrays, reduced against full,
    0..255; how many of the images the reduction applies to)."""
    from PIL import Image
    differences, reduced = [], 0
    for path in paths:
        with Image.open(path) as image:
            reduced += reduction(*image.size, (256, 256), reduce) > 1
        a = load_image(path, loader, reduce=reduce).astype(np.float32)
        b = load_image(path, loader, reduce=False).astype(np.float32)
        differences.append(np.abs(a - b).mean())
    return float(np.mean(differences)), int(reduced)


def generator_speed(list_file, cache):
    """Images/s of batches of 64 (crop, mirror; uint8, as training gets
    them) from a training generator with the default workers: the first
    epoch decodes, the second comes from the image cache when there is one.
    Returns both."""
    data = ImageDataGenerator(list_file, horizontal_flip=True, shuffle=True,
                              nb_classes=NUM_CLASSES, seed=1, cache=cache,
                              mean=None)
    speeds = []
    for _ in range(2):
        start = time.perf_counter()
        for _ in data.batches(64):
            pass
        speeds.append(data.data_size / (time.perf_counter() - start))
        data.reset_pointer()
    return speeds


def measure_loaders(list_file, folder, list_count, large_count):
    """The loader figures: speed and quality cost of reduced decoding on
    `list_count` images of the list ('list') and on `large_count` copies
    enlarged 2x ('large'); batches from the image cache."""
    figures = {}
    listed = list_paths(list_file)[:list_count]
    large = enlarged_copies(listed[:large_count], os.path.join(folder, 'large'))
    for loader in ('opencv', 'pil'):
        for name, paths in (('list', listed), ('large', large)):
            speeds = loader_speeds(paths, loader, dict(full=False,
                                                       reduced=True))
            key = 'loader.%s.%s.' % (name, loader)
            for variant, speed in speeds.items():
                figures[key + variant + '_img_per_s'] = speed
                if variant != 'full':
                    figures[key + variant + '_speedup'] = speed / speeds['full']
            mad, count = decoding_difference(paths, loader, reduce=True)
            figures['quality.%s.%s.mad' % (name, loader)] = mad
            figures['quality.%s.%s.reduced_images' % (name, loader)] = count
            figures['quality.%s.%s.images' % (name, loader)] = len(paths)
    decoding, cached = generator_speed(list_file, cache='memory')
    figures['loader.generator.decoding_img_per_s'] = decoding
    figures['loader.generator.cached_img_per_s'] = cached
    figures['loader.generator.cache_speedup'] = cached / decoding
    return figures


# ---------------------------------------------------------------------------
# Training configurations (each in a child process)
# ---------------------------------------------------------------------------


def training_specs(list_file, weights_file):
    """Every configuration a child process measures. The weights come first:
    training.build_graph turns on TensorFlow's determinism, after which
    bench_load's graphs (which set no seed) would be refused in a shared
    child (--quick)."""
    specs = [dict(kind='weights', name='weights.original', method='original'),
             dict(kind='weights', name='weights.fed', method='fed')]
    for layers in ('all', 'fc6-fc8'):
        for batch in BATCH_SIZES:
            for pipeline in ('prefetch', 'sync'):
                specs.append(dict(kind='train', name='train.%s.b%d.%s' % (
                    layers, batch, pipeline), layers=layers, batch=batch,
                    pipeline=pipeline, cache=None, augment=True, epochs=1))
    specs += [
        dict(kind='train', name='epoch.all.image_cache', layers='all',
             batch=64, pipeline='prefetch', cache='memory', augment=True,
             epochs=2),
        dict(kind='train', name='epoch.fc8.images', layers='fc8', batch=64,
             pipeline='prefetch', cache='auto', augment=False, epochs=2),
        dict(kind='train', name='epoch.fc8.feature_cache', layers='fc8',
             batch=64, pipeline='features', cache=None, augment=False,
             epochs=2),
    ]
    for spec in specs:
        spec.update(list_file=list_file, weights_file=weights_file)
    return specs


def run_children(specs, together):
    """Run the specs in child processes: one each, or (together) one for
    the weights and one for the training runs."""
    if together:
        groups = [[s for s in specs if s['kind'] == kind]
                  for kind in ('weights', 'train')]
        groups = [group for group in groups if group]
    else:
        groups = [[spec] for spec in specs]
    results = {}
    for group in groups:
        with tempfile.TemporaryDirectory() as folder:
            spec_file = os.path.join(folder, 'specs.json')
            out_file = os.path.join(folder, 'results.json')
            with open(spec_file, 'w') as f:
                json.dump(group, f)
            names = ', '.join(spec['name'] for spec in group)
            print('  measuring %s ...' % names, file=sys.stderr)
            child = subprocess.run(
                [sys.executable, os.path.abspath(__file__), '--child',
                 spec_file, out_file], stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, universal_newlines=True)
            if child.returncode != 0:
                sys.exit('The child measuring %s failed:\n%s'
                         % (names, child.stdout[-3000:]))
            with open(out_file) as f:
                results.update(json.load(f))
    return results


def child_main(spec_file, out_file):
    """In the child: measure each spec, then write {name: result}."""
    with open(spec_file) as f:
        specs = json.load(f)
    results = {}
    for spec in specs:
        measure = measure_training if spec['kind'] == 'train' else measure_weights
        result = measure(spec)
        result['peak_rss_mb'] = peak_rss_mb()
        results[spec['name']] = result
    with open(out_file, 'w') as f:
        json.dump(results, f)


def peak_rss_mb():
    """The peak resident memory of this process so far, in MB (Linux gives
    ru_maxrss in kilobytes, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1e6 if sys.platform == 'darwin' else 1e3)


def measure_training(spec):
    """Train `spec['epochs']` epochs; their times, speed and data waiting."""
    import training
    from alexnet import tf
    from featurecache import FeatureCache, decide
    config = training.Config(
        seed=1, num_classes=NUM_CLASSES, scratch=True, skip_layer=[],
        weights_path='', train_layers=TRAIN_LAYERS[spec['layers']],
        weight_decay=0.0005, momentum=0.9, dropout_rate=0.5,
        learning_rate=0.001, batch_size=spec['batch'])
    graph = training.build_graph(config)
    sync = spec['pipeline'] == 'sync'
    # The original pattern: one thread decodes every pixel, then the step.
    data = ImageDataGenerator(spec['list_file'], shuffle=True, seed=1,
                              horizontal_flip=spec['augment'], mean=None,
                              nb_classes=NUM_CLASSES, cache=spec['cache'],
                              workers=1 if sync else None, reduce=not sync)
    result = {}
    with tf.Session(config=training.session_config()) as sess:
        sess.run(graph.init)
        warm_up(sess, graph, config)
        inputs, features = graph.pixels, None
        if spec['pipeline'] == 'features':
            start = time.perf_counter()
            layer = decide(config.train_layers, spec['augment'],
                           config.dropout_rate).layer
            features = FeatureCache(graph.model, layer, graph.pixels).compute(
                sess, data, config.batch_size)
            result['feature_seconds'] = time.perf_counter() - start
            inputs = features.tensor
        for epoch in range(spec['epochs']):
            data.reset_pointer(epoch=epoch)
            if features is not None:
                batches = features.batches(data, config.batch_size)
            else:
                batches = data.batches(config.batch_size,
                                       prefetch=0 if sync else 2)
            result['epoch%d' % (epoch + 1)] = timed_epoch(
                sess, graph, config, batches, inputs)
    return result


def warm_up(sess, graph, config):
    """One step on a blank batch: TensorFlow prepares its kernels on the
    first run, which no epoch should be charged for."""
    images = np.zeros((config.batch_size, 227, 227, 3), np.uint8)
    labels = np.zeros((config.batch_size, NUM_CLASSES), np.float32)
    sess.run(graph.train_op, {graph.pixels: images, graph.y: labels,
                              graph.learning_rate: 0.0})


def timed_epoch(sess, graph, config, batches, inputs):
    """Train on `batches` as training.train_epoch does, timing the waits."""
    waited, images, step = 0.0, 0, 0
    start = time.perf_counter()
    while True:
        asked = time.perf_counter()
        batch = next(batches, None)
        waited += time.perf_counter() - asked
        if batch is None:
            break
        step += 1
        sess.run([graph.train_op, graph.loss, graph.correct], feed_dict={
            inputs: batch[0], graph.y: batch[1],
            graph.keep_prob: 1.0 - config.dropout_rate,
            graph.learning_rate: config.learning_rate,
            graph.dropout_seed: [config.seed, step]})
        images += len(batch[1])
    seconds = time.perf_counter() - start
    return dict(images=images, seconds=seconds, img_per_s=images / seconds,
                wait_share=waited / seconds)


def measure_weights(spec):
    """Load the weights file into a fresh AlexNet one way (bench_load)."""
    from bench_load import fed, measure, original_assign
    load = original_assign if spec['method'] == 'original' else fed
    seconds, size = measure(load, spec['weights_file'])
    return dict(seconds=seconds, graph_mb=size / 1e6)


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------


def summarise(figures, children):
    """Add the figures of the child processes to `figures` under flat names."""
    for name, result in children.items():
        figures['memory.' + name] = result['peak_rss_mb']
        if name.startswith('train.'):
            epoch = result['epoch1']
            figures[name + '.img_per_s'] = epoch['img_per_s']
            figures[name + '.wait_share'] = epoch['wait_share']
            figures[name + '.epoch_seconds'] = epoch['seconds']
        elif name.startswith('epoch.'):
            figures[name + '.epoch1_seconds'] = result['epoch1']['seconds']
            figures[name + '.epoch2_seconds'] = result['epoch2']['seconds']
            if 'feature_seconds' in result:
                figures[name + '.compute_seconds'] = result['feature_seconds']
        else:
            figures[name + '.seconds'] = result['seconds']
            figures[name + '.graph_mb'] = result['graph_mb']
    # Later epochs: the feature cache against the images (image cache warm).
    figures['epoch.fc8.feature_cache_speedup'] = (
        figures['epoch.fc8.images.epoch2_seconds']
        / figures['epoch.fc8.feature_cache.epoch2_seconds'])
    # A full all-layer epoch from the image cache (the second) against a
    # first epoch without it (the training.all.b64.prefetch run).
    figures['epoch.all.image_cache_speedup'] = (
        figures['train.all.b64.prefetch.epoch_seconds']
        / figures['epoch.all.image_cache.epoch2_seconds'])
    return figures


def table_rows(f):
    """(measure, value, baseline, baseline value, ratio) rows of the table."""
    rows = []
    images = 'real photos' if f['real_data'] else 'GENERATED images'

    def row(measure, value, baseline='', base=None, unit='%.1f', ratio=True):
        rows.append((measure, unit % value, baseline,
                     '' if base is None else unit % base,
                     '%.2fx' % (value / base) if ratio and base else ''))

    rows.append(('LOADERS, images/s, one thread',))
    for name, what in (('list', images), ('large', images + ' enlarged 2x')):
        for loader in ('opencv', 'pil'):
            key = 'loader.%s.%s.' % (name, loader)
            q = 'quality.%s.%s.' % (name, loader)
            row('%s, %s, reduced (%d of %d reduced)' % (
                loader, what, f[q + 'reduced_images'], f[q + 'images']),
                f[key + 'reduced_img_per_s'], 'full decoding',
                f[key + 'full_img_per_s'])
    row('batches of 64 from the image cache',
        f['loader.generator.cached_img_per_s'], 'decoding them, %d workers'
        % f['workers'], f['loader.generator.decoding_img_per_s'])
    rows.append(('QUALITY, mean abs. difference to full decoding (0..255)',))
    for name, what in (('list', images), ('large', 'enlarged 2x')):
        for loader in ('opencv', 'pil'):
            row('%s, %s' % (loader, what),
                f['quality.%s.%s.mad' % (name, loader)], unit='%.2f')
    rows.append(('TRAINING, images/s (share of the epoch waiting for data)',))
    for layers in ('all', 'fc6-fc8'):
        for batch in BATCH_SIZES:
            key = 'train.%s.b%d.' % (layers, batch)
            rows.append((
                '%s layers, batch %d, prefetching' % (layers, batch),
                '%.1f (%.1f%%)' % (f[key + 'prefetch.img_per_s'],
                                   100 * f[key + 'prefetch.wait_share']),
                'load, then step',
                '%.1f (%.1f%%)' % (f[key + 'sync.img_per_s'],
                                   100 * f[key + 'sync.wait_share']),
                '%.2fx' % (f[key + 'prefetch.img_per_s']
                           / f[key + 'sync.img_per_s'])))
    rows.append(('EPOCHS, seconds',))
    row('fc8 only, 2nd epoch, feature cache',
        f['epoch.fc8.feature_cache.epoch2_seconds'], 'images (image cache)',
        f['epoch.fc8.images.epoch2_seconds'], unit='%.2f')
    row('  its 1st epoch + computing the features',
        f['epoch.fc8.feature_cache.epoch1_seconds']
        + f['epoch.fc8.feature_cache.compute_seconds'], '1st epoch, images',
        f['epoch.fc8.images.epoch1_seconds'], unit='%.2f')
    row('all layers, batch 64, epoch from image cache',
        f['epoch.all.image_cache.epoch2_seconds'], 'epoch decoding',
        f['train.all.b64.prefetch.epoch_seconds'], unit='%.2f')
    rows.append(('WEIGHTS',))
    row('load_initial_weights (fed), seconds', f['weights.fed.seconds'],
        'session.run(var.assign())', f['weights.original.seconds'],
        unit='%.2f')
    row('graph size afterwards, MB', f['weights.fed.graph_mb'],
        'session.run(var.assign())', f['weights.original.graph_mb'],
        unit='%.2f')
    rows.append(('PEAK MEMORY, MB%s' % (
        '' if f['memory_isolated'] else
        ' (--quick: one child for all runs, so a running maximum)'),))
    for name in sorted(k for k in f if k.startswith('memory.')):
        row(name[len('memory.'):], f[name], unit='%.0f', ratio=False)
    return rows


def print_table(rows):
    """Print 5-column rows aligned; a row of one column is a section title."""
    header = ('measure', 'value', 'baseline', 'value', 'ratio')
    widths = [max(len(r[i]) for r in rows + [header] if len(r) > 1)
              for i in range(5)]
    line = '{:<%d}  {:>%d}  {:<%d}  {:>%d}  {:>%d}' % tuple(widths)
    print(line.format(*header))
    for r in rows:
        print('\n' + r[0] if len(r) == 1 else line.format(*r))


def check_targets(figures):
    """[{figure, what, value, target, met}] for TARGETS; met is None for a
    memory figure that was not measured in a process of its own."""
    checks = []
    for name, comparison, limit, what in TARGETS:
        value = figures[name]
        met = {'<=': value <= limit, '<': value < limit,
               '>=': value >= limit}[comparison]
        if name.startswith('memory.') and not figures['memory_isolated']:
            met = None
        checks.append(dict(figure=name, what=what, value=value,
                           target='%s %g' % (comparison, limit),
                           met=None if met is None else bool(met)))
    return checks


def machine():
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f
                         if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, Python %s, %s' % (
        model, os.cpu_count(), platform.python_version(), platform.system())


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='fewer images, all configurations in one child')
    parser.add_argument('--json', metavar='FILE', help='write the figures here')
    parser.add_argument('--images', type=int,
                        help='training images (default 1020, quick 128)')
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(*args.child)
    count = args.images or (128 if args.quick else 1020)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        list_file, data = training_list(folder, count)
        print('Data: %s\nMachine: %s' % (data, machine()), file=sys.stderr)
        print('  measuring the loaders ...', file=sys.stderr)
        figures = measure_loaders(list_file, folder,
                                  *((40, 20) if args.quick else (300, 100)))
        print('  (%.0f s)' % (time.perf_counter() - started), file=sys.stderr)
        weights_file = os.path.join(folder, 'bvlc_alexnet.npy')
        save_toronto_npy(random_alexnet(), weights_file)
        children = run_children(
            training_specs(list_file, weights_file),
            together=args.quick)
    figures.update(workers=default_workers(), memory_isolated=not args.quick,
                   real_data=data.startswith('real'))
    summarise(figures, children)
    targets = check_targets(figures)
    print('Data: %s\nMachine: %s%s\n' % (data, machine(),
                                         ' (--quick)' if args.quick else ''))
    print_table(table_rows(figures))
    print('\nTARGETS')
    verdict = {True: 'met', False: 'MISSED', None: 'n/a (--quick)'}
    for t in targets:
        print('  %-62s %9.3f %-8s %s'
              % (t['what'], t['value'], t['target'], verdict[t['met']]))
    seconds = time.perf_counter() - started
    print('\n(%.0f s)' % seconds)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(data=data, machine=machine(), quick=args.quick,
                           images=count,
                           seconds=seconds, figures=figures, targets=targets,
                           children=children), f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main()

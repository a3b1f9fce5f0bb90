"""The benchmark's report: flat figures, the table, the targets.

Part of benchmarks/bench.py (run that). `summarise` turns what the child
processes measured into figures with flat names ('train.all.b64.prefetch.
img_per_s'); `versus_original` puts the kit's figures beside the
original's; `table_rows` and `print_table` print them with their
baselines; `check_targets` compares them with TARGETS.
"""
import os
import platform

#: (figure, comparison, limit, what it says). The figures are named in
#: `summarise`.
TARGETS = [
    ('train.all.b64.prefetch.wait_share', '<=', 0.05,
     'data waiting <= 5% of an all-layer epoch at batch 64'),
    ('versus_original.all.b64.epoch_speedup', '>=', 1.0,
     'an all-layer epoch at batch 64 at least as fast as the original\'s'),
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

#: The kit against the original: (name, what, unit, the kit's figure, the
#: original's figure). The ratio is kit / original.
VERSUS_ORIGINAL = [
    ('all.b64.step_img_per_s', 'all layers, batch 64, one step (graph only)',
     'images/s', 'graph.kit.b64.img_per_s', 'graph.original.b64.img_per_s'),
    ('all.b64.step_seconds', 'all layers, batch 64, one step (graph only)',
     'seconds', 'graph.kit.b64.step_seconds',
     'graph.original.b64.step_seconds'),
    ('all.b128.step_img_per_s', 'all layers, batch 128, one step (graph '
     'only)', 'images/s', 'graph.kit.b128.img_per_s',
     'graph.original.b128.img_per_s'),
    ('all.b128.peak_memory_mb', 'all layers, batch 128, peak memory of the '
     'steps', 'MB', 'graph.kit.b128.peak_rss_mb',
     'graph.original.b128.peak_rss_mb'),
    ('all.b64.epoch_img_per_s', 'all layers, batch 64, an epoch from the '
     'images (data included)', 'images/s', 'train.all.b64.prefetch.img_per_s',
     'train.all.b64.original.img_per_s'),
    ('weights_seconds', 'loading the ImageNet weights (file included)',
     'seconds', 'weights.fed.seconds', 'weights.original.seconds'),
    ('weights_graph_mb', 'graph size after loading the weights', 'MB',
     'weights.fed.graph_mb', 'weights.original.graph_mb'),
]


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
        elif name.startswith('graph.'):
            for batch, steps in result.items():
                if batch.startswith('b'):
                    for key, value in steps.items():
                        figures['%s.%s.%s' % (name, batch, key)] = value
        else:
            figures[name + '.seconds'] = result['seconds']
            figures[name + '.graph_mb'] = result['graph_mb']
    # Later epochs: the feature cache against the images (image cache warm).
    figures['epoch.fc8.feature_cache_speedup'] = (
        figures['epoch.fc8.images.epoch2_seconds']
        / figures['epoch.fc8.feature_cache.epoch2_seconds'])
    # A full all-layer epoch from the image cache (the second) against a
    # first epoch without it (the train.all.b64.prefetch run).
    figures['epoch.all.image_cache_speedup'] = (
        figures['train.all.b64.prefetch.epoch_seconds']
        / figures['epoch.all.image_cache.epoch2_seconds'])
    figures['versus_original.all.b64.epoch_speedup'] = (
        figures['train.all.b64.prefetch.img_per_s']
        / figures['train.all.b64.original.img_per_s'])
    figures['versus_original.all.b64.step_speedup'] = (
        figures['graph.kit.b64.img_per_s']
        / figures['graph.original.b64.img_per_s'])
    return figures


def versus_original(figures):
    """{name: {what, unit, kit, original, ratio}}: the kit's figures beside
    the original's, measured in the same run (ratio = kit / original)."""
    return {name: dict(what=what, unit=unit, kit=figures[kit],
                       original=figures[original],
                       ratio=figures[kit] / figures[original])
            for name, what, unit, kit, original in VERSUS_ORIGINAL}


def table_rows(f):
    """(measure, value, baseline, baseline value, ratio) rows of the table;
    a row of one string is a section title."""
    rows = []
    images = 'real photos' if f['real_data'] else 'GENERATED images'

    def row(measure, value, baseline='', base=None, unit='%.1f', ratio=True):
        rows.append((measure, unit % value, baseline,
                     '' if base is None else unit % base,
                     '%.2fx' % (value / base) if ratio and base else ''))

    rows.append(('THE ORIGINAL (kratzert\'s graph: plain gradient descent, '
                 'float32 feeds, var.assign), same run',))
    units = {'images/s': '%.1f', 'seconds': '%.2f', 'MB': '%.0f'}
    for name, what, unit, kit, original in VERSUS_ORIGINAL:
        if not name.startswith('weights'):  # (in WEIGHTS below)
            row('%s, %s' % (what, unit), f[kit], 'the original', f[original],
                unit=units[unit])
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
    rows.append(('TRAINING, the kit\'s graph, images/s (share of the epoch '
                 'waiting for data)',))
    for layers in ('all', 'fc6-fc8'):
        for batch in (64, 128):
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
        'original: var.assign', f['weights.original.seconds'], unit='%.2f')
    row('graph size afterwards, MB', f['weights.fed.graph_mb'],
        'original: var.assign', f['weights.original.graph_mb'], unit='%.2f')
    rows.append(('PEAK MEMORY of each child, MB%s' % (
        '' if f['memory_isolated'] else
        ' (--quick: the training runs share one child: a running maximum)'),))
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
    training run's memory that was not measured in a process of its own."""
    checks = []
    for name, comparison, limit, what in TARGETS:
        value = figures[name]
        met = {'<=': value <= limit, '<': value < limit,
               '>=': value >= limit}[comparison]
        if name.startswith('memory.train') and not figures['memory_isolated']:
            met = None
        checks.append(dict(figure=name, what=what, value=value,
                           target='%s %g' % (comparison, limit),
                           met=None if met is None else bool(met)))
    return checks


def machine():
    """The processor's name, cores, Python and system, in one line."""
    model = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            model = next(line.split(':', 1)[1].strip() for line in f
                         if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    return '%s, %d cores, Python %s, %s' % (
        model, os.cpu_count(), platform.python_version(), platform.system())

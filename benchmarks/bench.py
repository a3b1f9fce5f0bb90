"""The kit against the original, and does training ever wait for data?

Every part, each beside its baseline measured in the same run.

    python benchmarks/bench.py                   # a few minutes on 2 cores
    python benchmarks/bench.py --quick           # about a minute: fewer images
    python benchmarks/bench.py --json out.json   # the figures as JSON too

What it measures, on the real Oxford 102 images (`../shared/data/oxford102`
or $FLOWERS_DIR; generated 500x667 JPEGs when they are absent):

original      the kit against the original itself (original_alexnet.py:
              kratzert's graph, plain gradient descent, float32 feeds of
              images minus the mean, load then step, var.assign loading):
              one all-layer step at batch 64 and 128, the peak memory of
              those steps at batch 128, an all-layer epoch at batch 64 with
              each one's loading, the weights. The JSON's `versus_original`
              holds these figures side by side.
loaders       images/s of load_image on one thread, OpenCV and Pillow,
              reduced against full decoding, on the list's photos and on
              copies enlarged 2x; the mean absolute difference of the final
              arrays against full decoding (0..255) is the quality cost.
              Batches from the image cache against decoding them
              (bench_loaders.py).
training      images/s of the kit's training steps, all layers and fc6-fc8
              only, at batch 64 and 128: the prefetching pipeline against
              loading on one thread then stepping (the same graph, only the
              loading differs), and the share of the epoch spent waiting for
              data (bench_training.py).
epochs        fc8-only epochs with the feature cache against without;
              all-layer epochs with the image cache against without.
weights       loading the ImageNet weights (a random file of the real size)
              by feeding them against the original's var.assign into its
              own graph: time and graph size (bench_load.py).
memory        peak resident memory: each configuration runs in a child
              process of its own and reports its own peak (the kernel's
              ru_maxrss). `--quick` runs the training runs in one child, so
              their memory figures are only a running maximum (and its
              figures are rough: few steps); the graph steps, kit and
              original, always have a child each.

Targets on a 2-core CPU are in bench_report.TARGETS; the table marks each
as met or MISSED.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run from anywhere: the kit's modules are there
    sys.path.insert(0, ROOT)
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import bench_report as report  # noqa: E402
from bench_loaders import measure_loaders, training_list  # noqa: E402
from bench_weights import random_alexnet  # noqa: E402
from datagenerator import default_workers  # noqa: E402
from weights import save_toronto_npy  # noqa: E402

BATCH_SIZES = (64, 128)


def specs_to_measure(list_file, weights_file, quick=False):
    """Every configuration a child process measures (see bench_training)."""
    specs = [dict(kind='weights', name='weights.original', method='original'),
             dict(kind='weights', name='weights.fed', method='fed')]
    # The largest batch first: its peak memory is the graph's (see
    # measure_graph_steps).
    for graph in ('original', 'kit'):
        specs.append(dict(kind='graph', name='graph.' + graph, graph=graph,
                          layers='all',
                          batches=sorted(BATCH_SIZES, reverse=True),
                          steps=2 if quick else 5))
    specs.append(dict(kind='train', name='train.all.b64.original',
                      graph='original', layers='all', batch=64,
                      pipeline='sync', cache=None, augment=True, epochs=1))
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


def child_groups(specs, together):
    """The specs, grouped into child processes: one each, or (together)
    one for the weights and one for the training runs. The graph steps
    always get a child each: their memory is the point."""
    if not together:
        return [[spec] for spec in specs]
    groups = [[spec] for spec in specs if spec['kind'] == 'graph']
    for kind in ('weights', 'train'):
        group = [spec for spec in specs if spec['kind'] == kind]
        if group:
            groups.append(group)
    return groups


class ChildFailed(RuntimeError):
    """A child process of the benchmark stopped with an error."""


def run_children(specs, together):
    """Measure the specs in child processes (see child_groups); returns
    {name: result}. Raises ChildFailed with the child's output."""
    results = {}
    for group in child_groups(specs, together):
        results.update(run_child(group))
    return results


def run_child(specs):
    """Measure `specs` one after the other in one child process; returns
    {name: result}. Raises ChildFailed with the child's output."""
    with tempfile.TemporaryDirectory() as folder:
        spec_file = os.path.join(folder, 'specs.json')
        out_file = os.path.join(folder, 'results.json')
        with open(spec_file, 'w') as f:
            json.dump(specs, f)
        names = ', '.join(spec['name'] for spec in specs)
        print('  measuring %s ...' % names, file=sys.stderr)
        child = subprocess.run(
            [sys.executable, os.path.abspath(__file__), '--child', spec_file,
             out_file], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            universal_newlines=True)
        if child.returncode != 0:
            raise ChildFailed('The child measuring %s failed:\n%s'
                              % (names, child.stdout[-3000:]))
        with open(out_file) as f:
            return json.load(f)


#: What the child does for each kind of spec: the function of
#: bench_training.
MEASURES = {'train': 'measure_training', 'graph': 'measure_graph_steps',
            'weights': 'measure_weights'}


def child_main(spec_file, out_file):
    """In the child: measure each spec, then write {name: result}."""
    with open(spec_file) as f:
        specs = json.load(f)
    unknown = [spec['kind'] for spec in specs if spec['kind'] not in MEASURES]
    if unknown:  # before the seconds of importing TensorFlow
        raise ValueError('no measure of kind %s (the kinds: %s)'
                         % (', '.join(unknown), ', '.join(sorted(MEASURES))))
    import bench_training
    results = {}
    for spec in specs:
        result = getattr(bench_training, MEASURES[spec['kind']])(spec)
        result['peak_rss_mb'] = bench_training.peak_rss_mb()
        results[spec['name']] = result
    with open(out_file, 'w') as f:
        json.dump(results, f)


def measure_everything(quick, count):
    """(description of the data, figures, children's results)."""
    with tempfile.TemporaryDirectory() as folder:
        list_file, data = training_list(folder, count)
        print('Data: %s\nMachine: %s' % (data, report.machine()),
              file=sys.stderr)
        print('  measuring the loaders ...', file=sys.stderr)
        figures = measure_loaders(list_file, folder,
                                  *((40, 20) if quick else (300, 100)))
        weights_file = os.path.join(folder, 'bvlc_alexnet.npy')
        save_toronto_npy(random_alexnet(), weights_file)
        children = run_children(
            specs_to_measure(list_file, weights_file, quick), together=quick)
    figures.update(workers=default_workers(), memory_isolated=not quick,
                   real_data=data.startswith('real'))
    report.summarise(figures, children)
    return data, figures, children


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='fewer images, the training runs in one child')
    parser.add_argument('--json', metavar='FILE', help='write the figures here')
    parser.add_argument('--images', type=int,
                        help='training images (default 1020, quick 128)')
    parser.add_argument('--child', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(*args.child)
    if args.images is not None and args.images < 1:
        sys.exit('bench.py: --images must be at least 1, not %d'
                 % args.images)
    count = args.images or (128 if args.quick else 1020)
    started = time.perf_counter()
    try:
        data, figures, children = measure_everything(args.quick, count)
    except ChildFailed as error:
        sys.exit(str(error))
    targets = report.check_targets(figures)
    print('Data: %s\nMachine: %s%s\n' % (
        data, report.machine(), ' (--quick)' if args.quick else ''))
    report.print_table(report.table_rows(figures))
    print('\nTARGETS')
    verdict = {True: 'met', False: 'MISSED', None: 'n/a (--quick)'}
    for t in targets:
        print('  %-66s %9.3f %-8s %s'
              % (t['what'], t['value'], t['target'], verdict[t['met']]))
    seconds = time.perf_counter() - started
    print('\n(%.0f s)' % seconds)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(data=data, machine=report.machine(),
                           quick=args.quick, images=count, seconds=seconds,
                           versus_original=report.versus_original(figures),
                           figures=figures, targets=targets,
                           children=children), f, indent=2, sort_keys=True)


if __name__ == '__main__':
    main()

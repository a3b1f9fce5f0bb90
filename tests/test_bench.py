"""benchmarks/bench.py: every figure of the table, the targets and the
comparison with the original is produced, and each measure measures.

The whole benchmark takes minutes, so these tests run its parts on a few
generated images and tiny batches, and check names, counts and the
arithmetic of the report, never timings.
"""
import json
import os
import sys

import pytest

# The benchmarks live in benchmarks/, beside the kit (tests/conftest.py puts
# the project root and tools/ on sys.path).
BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), 'benchmarks')
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

import bench  # noqa: E402
import bench_loaders  # noqa: E402
import bench_report  # noqa: E402


@pytest.fixture
def tiny_list(tmp_path):
    entries = bench_loaders.generated_jpegs(str(tmp_path / 'images'), 4)
    path = tmp_path / 'train.txt'
    path.write_text(''.join('%s %d\n' % entry for entry in entries))
    return str(path)


def fake_child_results(specs):
    """What the child processes report, with made-up numbers: the kit's
    graph steps take 0.5 s at batch 64, the original's 0.4 s; the kit's
    steps peak at 2700 MB at batch 128, the original's at 2300 MB."""
    epoch = dict(images=4, seconds=2.0, img_per_s=2.0, wait_share=0.01)
    step = {'kit': 0.5, 'original': 0.4}
    peak = {'kit': 2700.0, 'original': 2300.0}
    results = {}
    for spec in specs:
        if spec['kind'] == 'weights':
            result = dict(seconds=1.0 if spec['method'] == 'fed' else 8.0,
                          graph_mb=0.02)
        elif spec['kind'] == 'graph':
            graph = spec['graph']
            result = {'b%d' % batch: dict(
                step_seconds=step[graph] * batch / 64,
                img_per_s=64 / step[graph], peak_rss_mb=peak[graph])
                for batch in spec['batches']}
        else:
            result = dict(epoch1=epoch, epoch2=dict(epoch, seconds=0.1))
            if spec.get('graph') == 'original':
                result['epoch1'] = dict(epoch, img_per_s=1.6)
            if spec['pipeline'] == 'features':
                result['feature_seconds'] = 1.5
        result['peak_rss_mb'] = 1000.0
        results[spec['name']] = result
    return results


def test_every_figure_of_the_table_and_targets_exists(tiny_list, tmp_path,
                                                      capsys):
    figures = bench_loaders.measure_loaders(tiny_list, str(tmp_path), 4, 2)
    assert figures['quality.list.opencv.reduced_images'] == 4  # 500x667
    assert figures['quality.large.pil.reduced_images'] == 2    # 1000x1334
    assert 0 < figures['quality.list.pil.mad'] < 3.0
    specs = bench.specs_to_measure(tiny_list, 'weights.npy')
    figures.update(workers=2, memory_isolated=True, real_data=False)
    bench_report.summarise(figures, fake_child_results(specs))
    targets = bench_report.check_targets(figures)
    assert [t['figure'] for t in targets] == [t[0]
                                              for t in bench_report.TARGETS]
    bench_report.print_table(bench_report.table_rows(figures))
    table = capsys.readouterr().out
    for section in ('THE ORIGINAL', 'LOADERS', 'QUALITY', 'TRAINING',
                    'EPOCHS', 'WEIGHTS', 'PEAK MEMORY'):
        assert section in table
    json.dumps(dict(figures=figures, targets=targets))  # all serialisable


def test_the_kit_stands_beside_the_original_itself(tiny_list):
    """The JSON's versus_original: each figure of the kit beside the same
    figure of the original graph, and ratio = kit / original."""
    specs = bench.specs_to_measure(tiny_list, 'weights.npy')
    figures = dict(workers=2, memory_isolated=True, real_data=False)
    bench_report.summarise(figures, fake_child_results(specs))
    versus = bench_report.versus_original(figures)
    assert versus['all.b64.step_seconds']['kit'] == 0.5
    assert versus['all.b64.step_seconds']['original'] == 0.4
    assert versus['all.b64.step_img_per_s']['ratio'] == pytest.approx(0.8)
    assert versus['all.b128.peak_memory_mb']['ratio'] == pytest.approx(
        2700 / 2300.)
    assert versus['all.b64.epoch_img_per_s']['ratio'] == pytest.approx(
        2.0 / 1.6)
    assert versus['weights_seconds']['ratio'] == pytest.approx(1 / 8.)
    assert figures['versus_original.all.b64.epoch_speedup'] == pytest.approx(
        2.0 / 1.6)
    rows = {row[0]: row for row in bench_report.table_rows(
        dict(figures, **bench_loaders_figures()))}
    step = rows['all layers, batch 64, one step (graph only), images/s']
    assert step[1:] == ('128.0', 'the original', '160.0', '0.80x')


def bench_loaders_figures():
    """Loader figures for a table without measuring the loaders."""
    figures = {}
    for name in ('list', 'large'):
        for loader in ('opencv', 'pil'):
            key = 'loader.%s.%s.' % (name, loader)
            figures.update({key + 'reduced_img_per_s': 2.0,
                            key + 'full_img_per_s': 1.0})
            for part in ('mad', 'reduced_images', 'images'):
                figures['quality.%s.%s.%s' % (name, loader, part)] = 1
    figures.update({'loader.generator.cached_img_per_s': 2.0,
                    'loader.generator.decoding_img_per_s': 1.0})
    return figures


def test_the_graph_steps_get_a_child_each_even_when_quick():
    specs = bench.specs_to_measure('list.txt', 'weights.npy', quick=True)
    groups = bench.child_groups(specs, together=True)
    alone = [group[0]['name'] for group in groups if len(group) == 1]
    assert alone == ['graph.original', 'graph.kit']
    assert [len(group) for group in groups] == [1, 1, 2, len(specs) - 4]
    assert all(len(group) == 1
               for group in bench.child_groups(specs, together=False))
    graph = [spec for spec in specs if spec['kind'] == 'graph'][0]
    assert graph['batches'] == [128, 64]  # the largest first: its peak


def test_each_configuration_measures_its_epochs_and_steps(tiny_list):
    """In a child process, as the benchmark runs them (the kit's graph
    turns on TensorFlow's determinism for the whole process): the kit with
    each pipeline, the original with its own loading, and the graph steps
    of both at two batch sizes; the original's graphs after the kit's, as
    they may come in a shared child. Only fc8 learns, the cheapest step:
    the code of a measure does not depend on the layers."""
    specs = [dict(kind='train', name=pipeline, layers='fc8', batch=2,
                  pipeline=pipeline, cache=None,
                  augment=pipeline != 'features', epochs=2,
                  list_file=tiny_list)
             for pipeline in ('sync', 'prefetch', 'features')]
    specs.append(dict(specs[0], name='original', graph='original'))
    specs += [dict(kind='graph', name='steps.' + graph, graph=graph,
                   layers='fc8', batches=[3, 1], steps=2)
              for graph in ('kit', 'original')]
    results = bench.run_child(specs)  # one child: one TensorFlow import
    for name in ('sync', 'prefetch', 'features', 'original'):
        result = results[name]
        for epoch in ('epoch1', 'epoch2'):
            assert result[epoch]['images'] == 4
            assert 0 <= result[epoch]['wait_share'] <= 1
        assert ('feature_seconds' in result) == (name == 'features')
        assert result['peak_rss_mb'] > 0
    for name in ('steps.kit', 'steps.original'):
        steps = results[name]
        assert sorted(steps) == ['b1', 'b3', 'peak_rss_mb']
        for batch in (1, 3):
            measured = steps['b%d' % batch]
            assert measured['img_per_s'] == pytest.approx(
                batch / measured['step_seconds'])
        assert 0 < steps['b3']['peak_rss_mb'] <= steps['b1']['peak_rss_mb']


def test_a_failing_child_is_reported_with_its_output():
    with pytest.raises(bench.ChildFailed) as error:
        bench.run_children([dict(kind='nonsense', name='broken')],
                           together=False)
    assert 'The child measuring broken failed' in str(error.value)
    assert 'no measure of kind nonsense' in str(error.value)

"""tools/bench.py: every figure of the table and the targets is produced.

The whole benchmark takes minutes, so these tests run its parts on a few
generated images and check names and shapes, never timings.
"""
import json

import pytest

import bench


@pytest.fixture
def tiny_list(tmp_path):
    entries = bench.generated_jpegs(str(tmp_path / 'images'), 4)
    path = tmp_path / 'train.txt'
    path.write_text(''.join('%s %d\n' % entry for entry in entries))
    return str(path)


def fake_child_results(specs):
    """What the child processes report, with made-up numbers."""
    epoch = dict(images=4, seconds=2.0, img_per_s=2.0, wait_share=0.01)
    results = {}
    for spec in specs:
        if spec['kind'] == 'weights':
            result = dict(seconds=1.0, graph_mb=0.02)
        else:
            result = dict(epoch1=epoch, epoch2=dict(epoch, seconds=0.1))
            if spec['pipeline'] == 'features':
                result['feature_seconds'] = 1.5
        result['peak_rss_mb'] = 1000.0
        results[spec['name']] = result
    return results


def test_every_figure_of_the_table_and_targets_exists(tiny_list, tmp_path,
                                                      capsys):
    figures = bench.measure_loaders(tiny_list, str(tmp_path), 4, 2)
    assert figures['quality.list.opencv.reduced_images'] == 4  # 500x667
    assert figures['quality.large.pil.reduced_images'] == 2    # 1000x1334
    assert 0 < figures['quality.list.pil.mad'] < 3.0
    specs = bench.training_specs(tiny_list, 'weights.npy')
    figures.update(workers=2, memory_isolated=True, real_data=False)
    bench.summarise(figures, fake_child_results(specs))
    targets = bench.check_targets(figures)
    assert [t['figure'] for t in targets] == [t[0] for t in bench.TARGETS]
    bench.print_table(bench.table_rows(figures))
    table = capsys.readouterr().out
    for section in ('LOADERS', 'QUALITY', 'TRAINING', 'EPOCHS', 'WEIGHTS',
                    'PEAK MEMORY'):
        assert section in table
    json.dumps(dict(figures=figures, targets=targets))  # all serialisable


def test_the_training_configurations_measure_their_epochs(tiny_list):
    """In a child process, as the benchmark runs them (building a training
    graph turns on TensorFlow's determinism for the whole process)."""
    specs = [dict(kind='train', name=pipeline, layers=layers, batch=2,
                  pipeline=pipeline, cache=None,
                  augment=pipeline != 'features', epochs=2,
                  list_file=tiny_list)
             for pipeline, layers in (('sync', 'all'), ('prefetch', 'fc6-fc8'),
                                      ('features', 'fc8'))]
    results = bench.run_children(specs, together=True)
    for pipeline, result in results.items():
        for epoch in ('epoch1', 'epoch2'):
            assert result[epoch]['images'] == 4
            assert 0 <= result[epoch]['wait_share'] <= 1
        assert ('feature_seconds' in result) == (pipeline == 'features')
        assert result['peak_rss_mb'] > 0

"""tools/compare_runs.py: the table and the picture, from run folders
written with the kit's own writers (runfiles: history.csv, config.json)."""
import math
import os
import sys

import numpy as np
import pytest
from PIL import Image

import compare_runs
import runfiles


def run(capsys, argv):
    """compare_runs.main(argv); returns (stdout, the message it exits with)."""
    try:
        compare_runs.main(argv)
        message = None
    except SystemExit as exit:
        message = str(exit.code)
    return capsys.readouterr().out, message


def make_run(folder, mode, val_acc, train_loss, seconds=60.0, classes=102):
    """A run folder as finetune.py leaves it: runs/<mode>/checkpoints."""
    path = os.path.join(str(folder), 'runs', mode, 'checkpoints')
    os.makedirs(path)
    history = [dict(epoch=epoch, train_loss=loss, train_acc=0.0,
                    val_loss=0.0, val_acc=acc, seconds=seconds,
                    images_per_sec=1020 / seconds)
               for epoch, (acc, loss) in enumerate(zip(val_acc, train_loss),
                                                   start=1)]
    runfiles.write_history(history, os.path.join(path, 'history.csv'))
    runfiles.write_config(dict(num_classes=classes, mode=mode),
                          os.path.join(path, 'config.json'))
    return path


@pytest.fixture
def runs(tmp_path):
    """Curves shaped like fine-tuning and training from scratch: the first
    climbs fast and high, the second slowly; neither is real data."""
    epochs = np.arange(1, 31)
    finetune = make_run(tmp_path, 'finetune',
                        0.85 - 0.45 * np.exp(-epochs / 3.0),
                        4.0 * np.exp(-epochs / 4.0) + 0.05)
    scratch = make_run(tmp_path, 'scratch',
                       0.40 * (1 - np.exp(-epochs / 12.0)) + 0.01,
                       4.6 - 1.5 * (1 - np.exp(-epochs / 10.0)),
                       seconds=30.0)
    return finetune, scratch


def test_table_has_best_epoch_final_and_minutes(runs, capsys):
    out, message = run(capsys, list(runs))
    assert message is None
    lines = out.splitlines()
    assert lines[0].split() == ['run', 'best', 'val', 'acc', 'epoch', 'of',
                                'best', 'final', 'val', 'acc', 'minutes']
    finetune, scratch = lines[1].split(), lines[2].split()
    best_finetune = 0.85 - 0.45 * np.exp(-30 / 3.0)
    assert finetune == ['finetune', '%.2f%%' % (100 * best_finetune), '30',
                        '%.2f%%' % (100 * best_finetune), '30.0']
    assert scratch[0] == 'scratch' and scratch[2] == '30'
    assert scratch[4] == '15.0'  # 30 epochs of 30 s


def test_best_epoch_is_the_highest_not_the_last(tmp_path, capsys):
    folder = make_run(tmp_path, 'overfit', [0.2, 0.6, 0.5], [3.0, 2.0, 1.0])
    out, _ = run(capsys, [folder, '--labels', 'mine'])
    assert out.splitlines()[1].split() == ['mine', '60.00%', '2', '50.00%',
                                           '3.0']


def test_plot_is_written_with_both_panels(runs, tmp_path, capsys):
    pytest.importorskip('matplotlib')
    out_file = str(tmp_path / 'compare.png')
    out, message = run(capsys, list(runs) + [
        '--out', out_file, '--title', 'Synthetic curves (test data)'])
    assert message is None
    assert 'Wrote %s' % out_file in out
    with Image.open(out_file) as image:
        assert image.size == (1100, 420)
        pixels = np.asarray(image.convert('RGB'))
    assert pixels.std() > 10  # not a blank page
    if os.environ.get('KEEP_PLOT'):  # to look at it: KEEP_PLOT=path pytest
        Image.fromarray(pixels).save(os.environ['KEEP_PLOT'])


def test_without_matplotlib_the_table_still_prints(runs, tmp_path, capsys,
                                                   monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # import fails
    out, message = run(capsys, list(runs) + [
        '--out', str(tmp_path / 'never.png')])
    assert 'pip install matplotlib' in message
    assert out.splitlines()[1].startswith('finetune')
    assert not os.path.exists(str(tmp_path / 'never.png'))


def test_a_folder_without_history_is_a_clear_error(tmp_path, capsys):
    _, message = run(capsys, [str(tmp_path)])
    assert 'no history.csv' in message


def test_a_damaged_or_foreign_file_is_a_clear_error(tmp_path, capsys):
    folder = make_run(tmp_path, 'mine', [0.2], [3.0])
    with open(os.path.join(folder, 'config.json'), 'w') as f:
        f.write('{"num_classes": "102"}')
    _, message = run(capsys, [folder])
    assert 'config.json' in message and 'num_classes' in message
    for damaged in ('{not json', '[102]', '\xff\xfe'):
        with open(os.path.join(folder, 'config.json'), 'w',
                  encoding='latin-1') as f:
            f.write(damaged)
        _, message = run(capsys, [folder])
        assert 'config.json' in message, damaged
    os.remove(os.path.join(folder, 'config.json'))
    out, message = run(capsys, [folder])  # history.csv alone is enough
    assert message is None and out.splitlines()[1].startswith('mine')
    with open(os.path.join(folder, 'history.csv'), 'w') as f:
        f.write('epoch,loss\n1,2.0\n')
    _, message = run(capsys, [folder])
    assert 'history.csv has no column' in message and 'val_acc' in message


# ---- the axes of the picture -------------------------------------------------


def drawn(folders):
    """The Figure that --out would save, drawn (so that the tick labels and
    the offset text exist), and its two axes."""
    pytest.importorskip('matplotlib', reason='matplotlib is optional: the '
                        'picture cannot be drawn without it')
    plt = compare_runs.import_pyplot()
    figure = compare_runs.draw(plt, [compare_runs.Run(f) for f in folders])
    figure.canvas.draw()
    accuracy, loss = figure.axes
    return plt, figure, accuracy, loss


def visible_ticks(axis, limits):
    low, high = sorted(limits)
    return [t for t in axis.get_ticklocs() if low <= t <= high]


def check_sane_axes(accuracy, loss, epochs, accuracies, losses):
    for axes in (accuracy, loss):
        ticks = visible_ticks(axes.xaxis, axes.get_xlim())
        assert ticks, 'no epoch tick at all'
        assert all(float(t).is_integer() for t in ticks), ticks
        assert set(epochs) <= set(int(t) for t in ticks) or len(epochs) > 5
        low, high = axes.get_xlim()
        assert low < min(epochs) - 0.25 and high > max(epochs) + 0.25
        assert axes.yaxis.get_offset_text().get_text() == ''
        assert axes.xaxis.get_offset_text().get_text() == ''
    bottom, top = accuracy.get_ylim()
    assert bottom == 0 and 10 <= top <= 100
    assert top >= 100 * max(accuracies)
    bottom, top = loss.get_ylim()
    assert bottom <= min(losses) and top >= max(losses)
    assert top - bottom >= 0.1 * max(losses)  # not a hair's width
    labels = [label.get_text() for label in loss.get_yticklabels()]
    assert any(labels) and all('+' not in text for text in labels)


@pytest.mark.parametrize('losses', [[6.579], [6.57912, 6.57915, 6.57913]],
                         ids=['one epoch', 'a flat loss'])
def test_a_short_or_flat_run_gets_sane_axes(tmp_path, losses):
    """Left to matplotlib, one epoch spans 0.95..1.05 epochs with ticks at
    0.975, 1.025; a flat loss is labelled in steps of 1e-5 from an offset
    "+6.5791"."""
    accuracies = [0.0098] * len(losses)
    folder = make_run(tmp_path, 'short', accuracies, losses)
    plt, figure, accuracy, loss = drawn([folder])
    epochs = list(range(1, len(losses) + 1))
    check_sane_axes(accuracy, loss, epochs, accuracies, losses)
    markers = [line for line in accuracy.get_lines() if line.get_marker()
               not in (None, 'None', '')]
    assert markers and markers[0].get_markersize() >= 3
    plt.close(figure)


def test_long_runs_keep_their_axes(runs):
    plt, figure, accuracy, loss = drawn(list(runs))
    finetune = compare_runs.Run(runs[0])
    check_sane_axes(accuracy, loss, range(1, 31),
                    finetune.column('val_acc'),
                    finetune.column('train_loss')
                    + compare_runs.Run(runs[1]).column('train_loss'))
    assert accuracy.get_xlim()[1] < 32  # no half-empty picture
    plt.close(figure)


def test_the_axis_helpers():
    assert compare_runs.epoch_limits([1]) == (0.5, 1.5)
    assert compare_runs.accuracy_top([0.98, 0.98]) == 10.0
    assert compare_runs.accuracy_top([85.0]) == 100.0
    assert compare_runs.accuracy_top([45.0, float('nan')]) == 50.0
    low, high = compare_runs.loss_limits([6.579])
    assert low < 6.579 - 0.5 and high > 6.579 + 0.5
    assert compare_runs.loss_limits([0.01, 0.01])[0] == 0.0
    assert compare_runs.loss_limits([float('nan')]) is None
    assert not math.isnan(compare_runs.loss_limits([1.0, float('nan')])[1])

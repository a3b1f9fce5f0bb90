"""tools/compare_runs.py: the table and the picture, from run folders
written with training.py's own writers (history.csv, config.json)."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

import compare_runs
import training


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
    training.write_history(history, os.path.join(path, 'history.csv'))
    training.write_config(training.Config(num_classes=classes), mode,
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

"""The run folder (runs.py, runfiles.py): no run is ever overwritten, two
runs never share a folder, moved folders work, failed saves keep the last
good checkpoint, and old checkpoints go."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import runfiles
import runs
import settings
from alexnet import LAYERS, AlexNet, tf


class FakeData(object):
    """What Run reads of a generator."""
    loader = 'opencv'
    data_size = 8
    class_list = 'train.txt'

    def __init__(self):
        self.skipped = {}
        self.position = None

    def reset_pointer(self, epoch=None, position=0):
        self.position = (epoch, position)

    def steps_per_epoch(self, batch_size):
        return 2


def make_config(folder, **changes):
    values = dict(checkpoint_path=str(folder), filewriter_path='',
                  num_epochs=3, batch_size=4, num_classes=4, display_step=1,
                  learning_rate=0.001, keep_checkpoints=1, resume=False,
                  seed=1, train_layers=['fc8'], skip_layer=['fc8'],
                  train_file='train.txt', val_file='val.txt')
    values.update(changes)
    return settings.Config(values)


def new_session():
    """A fresh AlexNet graph and its session, as a script makes them."""
    tf.reset_default_graph()
    x = tf.placeholder(tf.float32, [None, 227, 227, 3])
    model = AlexNet(x, 1.0, 4, list(LAYERS), '')
    sess = tf.Session()
    sess.run(tf.global_variables_initializer())
    return sess, model


@pytest.fixture
def session():
    sess, model = new_session()
    yield sess, model
    sess.close()


def train_epochs(session, config, epochs):
    """Enter a Run and end `epochs` epochs (no steps: only bookkeeping),
    in a fresh graph, as a new process would."""
    sess, model = new_session()
    with runs.Run(sess, model, config, FakeData(), FakeData()) as run:
        for epoch in list(run.epochs())[:epochs]:
            progress = run.start_epoch(epoch)
            progress.update(1.0, np.array([True, False]))
            run.end_epoch(progress, 1.0, 0.5)
    sess.close()
    return run


def test_a_folder_holding_any_part_of_a_run_is_never_written(session,
                                                              tmp_path):
    for name in ('history.csv', 'config.json', 'epoch-3.index', 'checkpoint',
                 'best.data-00000-of-00001'):
        folder = tmp_path / name.replace('.', '_')
        folder.mkdir()
        (folder / name).write_text('x')
        with pytest.raises(runfiles.RunFolderError) as error:
            train_epochs(session, make_config(folder), 1)
        assert 'already holds a run' in str(error.value)
        assert '--resume' in str(error.value) and 'mv ' in str(error.value)
        assert os.listdir(str(folder)) == [name]  # untouched, no lock left


def test_a_moved_folder_resumes_from_its_own_files(session, tmp_path):
    original = tmp_path / 'original'
    train_epochs(session, make_config(original), 1)
    # An old-style `checkpoint` file naming the absolute original place:
    (original / 'checkpoint').write_text(
        'model_checkpoint_path: "%s/epoch-1"\n' % original)
    moved = tmp_path / 'moved'
    shutil.move(str(original), str(moved))
    os.makedirs(str(original))  # something else lives there now
    run = train_epochs(session, make_config(moved, resume=True), 1)
    assert run.first_epoch == 2
    assert sorted(os.listdir(str(moved / 'tensorboard')))
    assert os.listdir(str(original)) == []
    assert runfiles.latest_checkpoint(str(moved)) == str(moved / 'epoch-2')
    assert [row['epoch'] for row in
            runfiles.read_history(str(moved / 'history.csv'))] == [1, 2]


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    first = runfiles.RunLock(str(tmp_path))
    first.acquire()
    # A live process holds it: this one, as another run would.
    with pytest.raises(runfiles.RunFolderError) as error:
        runfiles.RunLock(str(tmp_path)).acquire()
    assert 'another run (process %d)' % os.getpid() in str(error.value)
    first.release()
    assert not os.path.exists(str(tmp_path / '.lock'))


def test_the_lock_of_a_killed_run_is_taken_over(tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    (tmp_path / '.lock').write_text('%s %d\n' % (
        __import__('socket').gethostname(), dead.pid))
    lock = runfiles.RunLock(str(tmp_path))
    lock.acquire()
    assert 'taking over the lock' in capsys.readouterr().out
    assert open(str(tmp_path / '.lock')).read().split()[1] == str(os.getpid())
    lock.release()


def test_temporary_files_of_a_killed_save_are_removed(session, tmp_path):
    (tmp_path / 'epoch-2.data-00000-of-00001.tempstate1234').write_text('x')
    (tmp_path / 'epoch-2_temp').mkdir()
    (tmp_path / 'epoch-2_temp' / 'part-00000').write_text('x')
    train_epochs(session, make_config(tmp_path), 1)
    names = os.listdir(str(tmp_path))
    assert not [name for name in names if 'temp' in name]
    assert 'epoch-1.index' in names


def test_old_and_interrupted_checkpoints_go_once_not_needed(tmp_path):
    for name in ('epoch-1', 'epoch-2', 'interrupted-2', 'interrupted-3',
                 'epoch-3', 'best'):
        for suffix in ('.index', '.data-00000-of-00001'):
            (tmp_path / (name + suffix)).write_text('x')
    runs.prune_checkpoints(str(tmp_path), keep=1)
    left = sorted(os.listdir(str(tmp_path)))
    assert left == ['best.data-00000-of-00001', 'best.index',
                    'epoch-3.data-00000-of-00001', 'epoch-3.index']


def test_a_failed_save_stops_with_the_fix_and_keeps_the_previous(session,
                                                                 tmp_path):
    sess, model = session
    folder = tmp_path / 'ck'
    with pytest.raises(runfiles.SaveError) as error:
        with runs.Run(sess, model, make_config(folder), FakeData(),
                      FakeData()) as run:
            for epoch in run.epochs():
                progress = run.start_epoch(epoch)
                progress.update(1.0, np.array([True]))
                if epoch == 2:  # the folder is replaced by a file
                    shutil.move(str(folder), str(tmp_path / 'kept'))
                    folder.write_text('in the way')
                run.end_epoch(progress, 1.0, 0.5)
    message = str(error.value)  # history.csv is written first, and fails
    assert 'Could not write %s' % folder in message and '--resume' in message
    assert runfiles.latest_checkpoint(str(tmp_path / 'kept')).endswith(
        'epoch-1')


@pytest.mark.parametrize('content', ['epoch,train_loss\n1,x\n', '\x00\xff'])
def test_a_damaged_history_is_named(tmp_path, content):
    path = tmp_path / 'history.csv'
    path.write_bytes(content.encode('latin1'))
    with pytest.raises(runfiles.RunFolderError) as error:
        runfiles.read_history(str(path))
    assert str(path) in str(error.value)


def test_resume_refuses_another_validation_list_or_loader(session, tmp_path):
    train_epochs(session, make_config(tmp_path), 1)
    with pytest.raises(runfiles.RunFolderError) as error:
        train_epochs(session, make_config(tmp_path, resume=True,
                                          val_file='other.txt'), 1)
    assert "val_file: 'val.txt' in the run, 'other.txt' now" in str(
        error.value)
    with pytest.raises(runfiles.RunFolderError) as error:
        train_epochs(session, make_config(tmp_path, resume=True,
                                          batch_size=2), 1)
    assert 'batch_size: 4 in the run, 2 now' in str(error.value)

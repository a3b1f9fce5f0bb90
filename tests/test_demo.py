"""The offline lesson (demo.py): generated pictures, pretraining, export,
and the fine-tuned run beating the scratch run.

The lesson runs the training script as separate processes, with flags only,
so these tests hold for any script that keeps the command-line interface.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

import demo
import weights
from conftest import ROOT

FINETUNE = os.path.join(ROOT, 'finetune.py')

# The test that plays a reduced lesson and asserts that fine-tuning beats
# scratch is not here yet: in the reduced lessons tried so far the margin
# was not reliable (issue 15 stays open for it).


@pytest.mark.parametrize('flag', ['--train_file', '--checkpoint_path=x',
                                  '--weights_path', '--scratch', '--resume'])
def test_flags_that_would_move_the_lesson_are_refused(flag, tmp_path):
    message = demo.run_lesson(FINETUNE, ['--demo', flag, 'x'],
                              folder=str(tmp_path))
    assert message and flag.split('=')[0] in message
    assert os.listdir(str(tmp_path)) == []  # refused before anything ran


def test_the_same_seed_draws_the_same_pictures(tmp_path):
    first = demo.make_image_set(str(tmp_path / 'a'), demo.TARGET_CLASSES, 2,
                                1, seed=5)
    second = demo.make_image_set(str(tmp_path / 'b'), demo.TARGET_CLASSES, 2,
                                 1, seed=5)
    for a, b in zip(first, second):
        with open(a) as fa, open(b) as fb:
            assert fa.read() == fb.read()
    name = 'images/train_3_001.jpg'
    with open(str(tmp_path / 'a' / name), 'rb') as fa, \
            open(str(tmp_path / 'b' / name), 'rb') as fb:
        assert fa.read() == fb.read()


def test_source_and_target_classes_are_disjoint():
    source_shapes = {shape for _, shape in demo.SOURCE_CLASSES}
    assert not source_shapes & {shape for _, shape in demo.TARGET_CLASSES}


@pytest.mark.parametrize('content', ['other task', 'not weights'])
def test_a_pretrained_file_of_something_else_is_refused(content, tmp_path):
    path = tmp_path / 'pretrained.npy'
    if content == 'other task':  # fc8 of 3 classes, not of the 6 sources
        weights.save_toronto_npy({'fc8': [np.zeros((4096, 3), np.float32),
                                          np.zeros(3, np.float32)]}, str(path))
    else:
        path.write_bytes(b'<html>404</html>')
    message = demo.run_lesson(FINETUNE, ['--demo'], folder=str(tmp_path))
    assert str(path) in message and 'Delete it' in message
    assert sorted(os.listdir(str(tmp_path))) == ['pretrained.npy']


def test_finetune_demo_refuses_a_flag_that_moves_the_runs(tmp_path):
    done = subprocess.run([sys.executable, FINETUNE, '--demo',
                           '--checkpoint_path', str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, cwd=str(tmp_path))
    assert done.returncode != 0
    assert '--checkpoint_path' in done.stdout and 'Traceback' not in done.stdout

"""Hours of training are never lost: interruptions, resume, determinism."""
import csv
import os
import re
import signal
import subprocess
import sys

import pytest

import loop
from conftest import ROOT
from demo_data import make_demo_dataset

DETERMINISTIC = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc']


@pytest.fixture(scope='module')
def flags(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('data'))
    train_file, val_file = make_demo_dataset(folder, train_per_class=6,
                                             val_per_class=3)
    return ['--scratch', '--num_epochs', '2', '--train_file', train_file,
            '--val_file', val_file, '--replacementpath', '',
            '--num_classes', '4', '--batch_size', '8', '--display_step', '1',
            '--learning_rate', '0.0003']


def command(flags, folder, *extra):
    return ([sys.executable, os.path.join(ROOT, 'finetune.py')] + flags +
            ['--checkpoint_path', os.path.join(folder, 'ck'),
             '--filewriter_path', os.path.join(folder, 'tb')] + list(extra))


def run(flags, folder, *extra):
    result = subprocess.run(command(flags, folder, *extra), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    return result.stdout


def history(folder):
    with open(os.path.join(folder, 'ck', 'history.csv')) as f:
        return [{key: row[key] for key in DETERMINISTIC}
                for row in csv.DictReader(f)]


def interrupt_in_epoch_2(flags, folder, sig):
    """Start a run and send `sig` after the first step of epoch 2."""
    process = subprocess.Popen(command(flags, folder), cwd=ROOT,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if line.startswith('Epoch 2/2 [1/'):
            process.send_signal(sig)
            break
    output.append(process.communicate(timeout=300)[0])
    return process.returncode, ''.join(output)


@pytest.fixture(scope='module')
def uninterrupted(flags, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('uninterrupted'))
    run(flags, folder)
    return history(folder)


def test_same_seed_same_history(flags, uninterrupted, tmp_path):
    run(flags, str(tmp_path))
    assert history(str(tmp_path)) == uninterrupted
    assert len(uninterrupted) == 2


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_a_signal_asks_the_loop_to_stop_after_its_step(sig):
    """Ctrl-C and `kill` (SIGTERM) take the same way: a flag the loop reads
    after its step, then a second one stops at once. (The whole way, from
    the signal to the resumed history, is the next test's, with SIGINT.)"""
    previous = signal.getsignal(sig)
    with loop.StopOnSignals() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is previous


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_resumes_to_the_same_history(flags, uninterrupted,
                                                     tmp_path, sig):
    folder = str(tmp_path)
    code, output = interrupt_in_epoch_2(flags, folder, sig)
    assert code != 0
    assert history(folder) == uninterrupted[:1]  # epoch 2 is not finished
    if sig == signal.SIGKILL:  # no warning: back to the end of epoch 1
        resumed_from = 'epoch-1'
    else:  # the step finishes, and where epoch 2 stands is saved
        # after the step in flight when the signal came: 1 or 2 of 3
        assert re.search(r'Stopped in epoch 2 after step [12]\b', output)
        assert '--resume' in output.splitlines()[-1]
        resumed_from = 'interrupted-2'
    output = run(flags, folder, '--resume')
    assert 'Resuming from' in output and resumed_from in output
    if sig != signal.SIGKILL:
        assert 'Epoch 2/2 [1/' not in output  # step 1 is not made again
    assert history(folder) == uninterrupted

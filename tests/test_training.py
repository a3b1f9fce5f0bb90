"""The training scripts: configuration, pre-flight checks, whole runs."""
import csv
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import runfiles
from alexnet import LAYERS
import settings
from conftest import ROOT
from demo_data import make_demo_dataset

FINETUNE = os.path.join(ROOT, 'finetune.py')


def script_globals(**overrides):
    """A config block as finetune.py defines it."""
    values = dict(__file__=FINETUNE, __doc__='Fine-tune.', train_file='t.txt',
                  num_epochs=30, learning_rate=0.001, train_layers=['fc7', 'fc8'],
                  seed=1, replacementpath='data', LOADER='opencv',
                  momentum=0.9, weight_decay=0.0005, skip_layer=['fc8'],
                  checkpoint_path='runs/{mode}/checkpoints',
                  filewriter_path='')
    values.update(overrides)
    return values


def configure(values, argv):
    return settings.configure(values, argv, check_files=False)


def test_flags_override_the_config_block_in_both_spellings():
    values = script_globals()
    config = configure(values, ['--num_epochs', '5', '--learning_rate=0.01',
                                '--train_layers', 'fc6,fc7,fc8',
                                '--replacementpath=', '--scratch'])
    assert config.num_epochs == 5 and values['num_epochs'] == 5
    assert config.learning_rate == 0.01
    assert config.train_layers == ['fc6', 'fc7', 'fc8']
    assert config.replacementpath == ''
    assert config.scratch and not config.resume and not config.demo
    assert config.seed == 1 and 'LOADER' not in config


@pytest.mark.parametrize('argv, named', [
    (['--num_epoch', '5'], '--num_epoch'),
    (['--num_epochs', 'five'], '--num_epochs'),
    (['--learning_rate', 'x'], '--learning_rate'),
    (['--learning_rate', 'nan'], 'learning_rate must be a finite number'),
    (['--learning_rate', 'inf'], 'learning_rate must be a finite number'),
    (['--learning_rate', '-0.1'], 'learning_rate must be in [0'),
    (['--learning_rate', '0'], 'learning_rate must be positive'),
    (['--momentum', '-0.5'], 'momentum must be in [0, 1)'),
    (['--momentum', '1.5'], 'momentum must be in [0, 1)'),
    (['--weight_decay=-1e-4'], 'weight_decay must be in [0'),
    (['--weight_decay', 'nan'], 'weight_decay must be a finite number'),
    (['--seed', '-1'], 'seed must be between 0 and 2147483647'),
    (['--seed', '99999999999'], 'seed must be between 0 and 2147483647'),
    (['--num_epochs', '0'], 'num_epochs must be at least 1'),
    (['--skip_layer', 'fc9'], "skip_layer names unknown layers ['fc9']")])
def test_unknown_flags_and_bad_values_are_errors_naming_them(argv, named,
                                                             capsys):
    with pytest.raises(SystemExit) as stop:
        configure(script_globals(), argv)
    assert stop.value.code == 2
    error = capsys.readouterr().err
    assert named in error and 'Traceback' not in error


def test_output_folders_that_are_files_are_refused(tmp_path, capsys):
    a_file = tmp_path / 'a_file'
    a_file.write_text('not a folder')
    for flag in ('--checkpoint_path', '--filewriter_path'):
        for path in (a_file, a_file / 'under' / 'it'):
            with pytest.raises(SystemExit):
                configure(script_globals(), [flag, str(path)])
            error = capsys.readouterr().err
            assert '%s is a file' % a_file in error, error


def test_help_lists_every_setting_with_comment_and_default(capsys):
    with pytest.raises(SystemExit):
        configure(script_globals(__file__=FINETUNE), ['--help'])
    text = ' '.join(capsys.readouterr().out.split())
    assert '--num_epochs INT passes over the training list (default: 30)' in text
    assert '--train_layers LIST layers that learn (default: fc7,fc8)' in text
    assert '--scratch' in text and '--resume' in text and '--demo' in text


def test_missing_inputs_are_listed_together_with_the_commands(tmp_path):
    val = tmp_path / 'val.txt'
    val.write_text('jpg/image_00001.jpg 0\n')
    config = settings.Config(train_file=str(tmp_path / 'absent.txt'),
                             val_file=str(val), num_classes=102,
                             replacementpath=str(tmp_path / 'flowers' / 'jpg'))
    with pytest.raises(settings.InputError) as error:
        settings.check_inputs(config)
    message = str(error.value)
    assert 'absent.txt' in message and 'tools/make_lists.py' in message
    assert '1 of the 1 images of %s' % val in message
    assert '--only data --dest %s' % (tmp_path / 'flowers') in message
    assert 'weights' not in message  # checked only if the load line runs


# ---- whole runs, as a user starts them --------------------------------------

def run_script(script, *args, check=True):
    """Run finetune.py or finetune_pil.py; returns (exit code, output)."""
    result = subprocess.run([sys.executable, os.path.join(ROOT, script)] + list(args),
                            cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True,
                            timeout=600)
    if check:
        assert result.returncode == 0, result.stdout[-3000:]
    return result.returncode, result.stdout


@pytest.fixture(scope='module')
def demo_lists(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('demo'))
    return make_demo_dataset(folder, train_per_class=6, val_per_class=3)


def read_history(path):
    with open(os.path.join(path, 'history.csv')) as f:
        return list(csv.DictReader(f))


def small_run_flags(demo_lists, tmp_path):
    train_file, val_file = demo_lists
    return ['--train_file', train_file, '--val_file', val_file,
            '--replacementpath', '', '--num_classes', '4', '--batch_size', '8',
            '--checkpoint_path', str(tmp_path / 'ck'),
            '--filewriter_path', str(tmp_path / 'tb')]


def folder_bytes(folder):
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(folder) for name in names)


@pytest.mark.parametrize('script', ['finetune.py', 'finetune_pil.py'])
def test_scripts_train_from_scratch_and_keep_a_lean_folder(script, demo_lists,
                                                           tmp_path):
    """Three epochs: the folder keeps the newest epoch checkpoint (weights
    and momentum) and best (weights only), whatever the number of epochs;
    the TensorBoard logs go inside it unless filewriter_path says so."""
    flags = small_run_flags(demo_lists, tmp_path)[:-2]  # default logs
    _, output = run_script(script, '--scratch', '--num_epochs', '3', *flags)
    assert 'Random guessing scores 25.00%' in output
    assert 'Epoch 3/3: train loss' in output
    assert 'Best validation accuracy' in output
    folder = str(tmp_path / 'ck')
    history = read_history(folder)
    assert list(history[0]) == runfiles.HISTORY_COLUMNS
    assert [row['epoch'] for row in history] == ['1', '2', '3']
    assert all(0 <= float(row['val_acc']) <= 1 for row in history)
    checkpoints = sorted(name[:-len('.index')] for name in os.listdir(folder)
                         if name.endswith('.index'))
    assert checkpoints == ['best', 'epoch-3']
    weights_bytes = sum(os.path.getsize(path) for path in
                        glob.glob(os.path.join(folder, 'best.data-*')))
    epoch_bytes = sum(os.path.getsize(path) for path in
                      glob.glob(os.path.join(folder, 'epoch-3.data-*')))
    assert 1.9 < epoch_bytes / weights_bytes < 2.1  # weights and momentum
    assert folder_bytes(folder) < 3.05 * weights_bytes
    config = json.load(open(os.path.join(folder, 'config.json')))
    assert config['mode'] == 'scratch' and config['scratch'] is True
    assert config['num_classes'] == 4 and config['loaded_layers'] == []
    assert config['loader'] == ('pil' if 'pil' in script else 'opencv')
    assert glob.glob(os.path.join(folder, 'tensorboard', 'events.out.*'))
    assert not os.path.exists(os.path.join(folder, '.lock'))


def test_commented_out_load_line_trains_from_scratch_without_weights(
        demo_lists, tmp_path):
    """The exercise's step 2, as a student does it: the load line commented
    out, and no weights file anywhere."""
    source = open(FINETUNE).read()
    line = '    model.load_initial_weights(sess)\n'
    assert source.count(line) == 1
    script = tmp_path / 'finetune.py'
    script.write_text(source.replace(line, '    # ' + line.lstrip()))
    result = subprocess.run(
        [sys.executable, str(script), '--num_epochs', '1',
         '--checkpoint_path', 'runs/{mode}/checkpoints'] +
        small_run_flags(demo_lists, tmp_path)[:-4],
        cwd=str(tmp_path), env=dict(os.environ, PYTHONPATH=ROOT),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        universal_newlines=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'Training from scratch' in result.stdout
    assert not (tmp_path / 'bvlc_alexnet.npy').exists()
    folder = tmp_path / 'runs' / 'scratch' / 'checkpoints'
    config = json.load(open(str(folder / 'config.json')))
    assert config['mode'] == 'scratch' and config['scratch'] is True
    assert config['loaded_layers'] == [] and config['skip_layer'] == ['fc8']


def test_missing_weights_are_reported_when_the_load_line_runs(demo_lists,
                                                              tmp_path):
    code, output = run_script('finetune.py', '--num_epochs', '1',
                              '--weights_path', str(tmp_path / 'none.npy'),
                              *small_run_flags(demo_lists, tmp_path),
                              check=False)
    assert code != 0 and 'Traceback' not in output
    assert 'none.npy' in output and '--scratch' in output
    assert 'load_initial_weights' in output  # the other way out
    assert not (tmp_path / 'ck').exists()


def test_finetune_resume_and_no_silent_overwrite(demo_lists, tmp_path):
    """Fine-tune from a weights file, resume for a second epoch, and refuse
    to start a new run over an old one."""
    import weights
    weights_path = str(tmp_path / 'bvlc_alexnet.npz')
    rng = np.random.default_rng(0)
    weights.save_npz({name: {'weights': (rng.standard_normal(shape['weights']) * 0.01).astype(np.float32),
                             'biases': np.zeros(shape['biases'], np.float32)}
                      for name, shape in weights.ALEXNET_SHAPES.items()},
                     weights_path)
    flags = small_run_flags(demo_lists, tmp_path) + ['--weights_path', weights_path]
    _, output = run_script('finetune.py', '--num_epochs', '1', *flags)
    assert 'from the weights in %s (fine-tuning' % weights_path in output
    first = read_history(str(tmp_path / 'ck'))
    config = json.load(open(str(tmp_path / 'ck' / 'config.json')))
    assert config['mode'] == 'finetune' and config['scratch'] is False
    assert config['loaded_layers'] == list(LAYERS[:-1])

    _, output = run_script('finetune.py', '--num_epochs', '2', '--resume', *flags)
    assert 'Resuming from' in output and '1 epochs done' in output
    assert 'Epoch 1/2' not in output and 'Epoch 2/2: train loss' in output
    history = read_history(str(tmp_path / 'ck'))
    assert [row['epoch'] for row in history] == ['1', '2']
    assert history[0] == first[0]

    code, output = run_script('finetune.py', '--num_epochs', '1', *flags,
                              check=False)
    assert code != 0 and 'already holds a run' in output and '--resume' in output
    # (Other settings changed on --resume: tests/test_runs.py, in-process.)
    code, output = run_script('finetune_pil.py', '--num_epochs', '3',
                              '--resume', *flags, check=False)
    assert code != 0 and 'would change settings' in output
    assert "loader: 'opencv' in the run, 'pil' now" in output
    assert len(read_history(str(tmp_path / 'ck'))) == 2


def test_a_mismatched_weights_file_stops_before_training(demo_lists, tmp_path):
    import weights
    weights_path = str(tmp_path / 'small.npz')
    weights.save_npz({name: {part: np.zeros(shape, np.float32)
                             for part, shape in parts.items()}
                      for name, parts in weights.ALEXNET_SHAPES.items()},
                     weights_path)
    code, output = run_script('finetune.py', '--num_epochs', '1',
                              '--weights_path', weights_path, '--skip_layer=',
                              *small_run_flags(demo_lists, tmp_path), check=False)
    assert code != 0 and 'Traceback' not in output
    assert "keep 'fc8' in skip_layer" in output
    assert not (tmp_path / 'ck').exists()




def test_the_refusal_says_where_the_images_are(tmp_path):
    """replacementpath set to the dataset folder instead of its jpg/."""
    (tmp_path / 'oxford102' / 'jpg').mkdir(parents=True)
    (tmp_path / 'oxford102' / 'jpg' / 'image_00001.jpg').write_bytes(b'x')
    listed = tmp_path / 'list.txt'
    listed.write_text('jpg/image_00001.jpg 0\n')
    config = settings.Config(train_file=str(listed), val_file=str(listed),
                             num_classes=102,
                             replacementpath=str(tmp_path / 'oxford102'))
    with pytest.raises(settings.InputError) as error:
        settings.check_inputs(config)
    message = str(error.value)
    assert 'Refused to start' in message
    assert str(tmp_path / 'oxford102' / 'jpg') in message
    assert 'set replacementpath' in message

"""What a run folder holds, read from the folder's own files.

A run of finetune.py writes into its checkpoint_path:

    best.index, best.data-*             the best checkpoint so far
    epoch-N.index, epoch-N.data-*       the checkpoint of epoch N
    interrupted-N.index, ...            the run was stopped inside epoch N
    config.json                         the configuration of the run
    checkpoint, best_checkpoint         TensorFlow's notes of the newest ones

TensorFlow's `checkpoint` file records each checkpoint's path as it was
given when saving: an absolute path when checkpoint_path was absolute. In a
folder that was moved or copied since, that file still names the old place,
so `tf.train.latest_checkpoint` finds the old run's files, or nothing. The
functions here never read it: they list the folder itself, so a run folder
works wherever it is (another disk, a colleague's machine, a USB stick).

Nothing here needs TensorFlow: a checkpoint is found by its `.index` file.
"""
import json
import os
import re


class RunFolderError(ValueError):
    """A run folder, or one of its files, that cannot be used; the message
    names the file and says what to do."""


class CheckpointError(RunFolderError):
    """A path that holds no usable checkpoint; the message says why."""


#: The numbered checkpoints of a run; [0-9] and not \d, which would also
#: match other scripts' digits.
NUMBERED_CHECKPOINT = re.compile(r'^(epoch|interrupted)-([0-9]+)\.index$')

#: The configuration a run writes beside its checkpoints, and the most of
#: it that is read (a real one is 2 KB; this stops a wrong file early).
CONFIG_FILE = 'config.json'
MAX_CONFIG_BYTES = 10 ** 6

#: What to do about a damaged config.json.
CONFIG_FIX = ('Restore it from a backup, or move it out of the folder: the '
              'checkpoints do not need it')


def best_checkpoint(folder):
    """The prefix `folder/best` if the folder holds best.index, else None."""
    prefix = os.path.join(folder, 'best')
    return prefix if os.path.isfile(prefix + '.index') else None


def latest_checkpoint(folder):
    """The newest epoch-N or interrupted-N checkpoint in `folder`, or None.

    Newest means the largest N. For the same N, epoch-N is newer than
    interrupted-N: interrupted-N is saved when a run is stopped inside
    epoch N, and epoch-N once a resumed run has finished that epoch.
    """
    numbered = []
    try:
        names = os.listdir(folder)
    except OSError as error:
        raise RunFolderError('cannot list the run folder %s: %s'
                             % (folder, error.strerror))
    for name in names:
        match = NUMBERED_CHECKPOINT.match(name)
        if match and os.path.isfile(os.path.join(folder, name)):
            kind, number = match.groups()
            numbered.append((int(number), kind == 'epoch', name))
    if not numbered:
        return None
    newest = max(numbered)[2]
    return os.path.join(folder, newest[:-len('.index')])


def find_checkpoint(path):
    """The checkpoint prefix that `path` stands for.

    A TensorFlow checkpoint is several files that share a prefix
    (`best.index`, `best.data-00000-of-00001`); the prefix is what is
    restored. `path` may be
      - a run folder (a checkpoint_path of finetune.py): its best
        checkpoint `best`, or else its latest (see latest_checkpoint);
      - a prefix, such as runs/finetune/checkpoints/epoch-10;
      - one of the checkpoint's files (what tab completion gives).
    Raises CheckpointError if there is no checkpoint there.
    """
    if os.path.isdir(path):
        found = best_checkpoint(path) or latest_checkpoint(path)
        if found:
            return found
        raise CheckpointError(
            'no checkpoint in the folder %s: a run folder holds best.index '
            'and epoch-N.index files, written by finetune.py' % path)
    for suffix in ('.index', '.meta', '.data-'):
        if suffix in os.path.basename(path):
            path = path[:path.rindex(suffix)]
    if os.path.isfile(path + '.index'):
        return path
    raise CheckpointError(
        '%s is neither a run folder nor a checkpoint; give the run folder '
        '(e.g. runs/finetune/checkpoints) or a checkpoint prefix (e.g. '
        'runs/finetune/checkpoints/epoch-10, without .index)' % path)


def run_config(checkpoint):
    """The config.json of the run that `checkpoint` (a run folder or a
    checkpoint, as for find_checkpoint) belongs to; {} if there is none.

    Raises RunFolderError, naming the file, if config.json cannot be read
    or is not a JSON object (e.g. cut short by a full disk).
    """
    folder = os.path.dirname(find_checkpoint(checkpoint))
    path = os.path.join(folder, CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    config = _parse_json(path, _read_small_file(path))
    if not isinstance(config, dict):
        raise RunFolderError('%s holds a JSON %s, not the object {...} that '
                             'finetune.py writes. %s'
                             % (path, type(config).__name__, CONFIG_FIX))
    return config


def _read_small_file(path):
    """The bytes of a file of at most MAX_CONFIG_BYTES."""
    if not os.path.isfile(path):
        raise RunFolderError('%s is not a file. %s' % (path, CONFIG_FIX))
    try:
        with open(path, 'rb') as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise RunFolderError('cannot read %s: %s' % (path, error.strerror))
    if len(data) > MAX_CONFIG_BYTES:
        raise RunFolderError('%s is over %d bytes: not the file finetune.py '
                             'wrote. %s'
                             % (path, MAX_CONFIG_BYTES, CONFIG_FIX))
    return data


def _parse_json(path, data):
    """The JSON value in `data`, the bytes of the file `path`."""
    try:
        return json.loads(data.decode('utf-8-sig'))  # -sig: Notepad's BOM
    except UnicodeDecodeError as error:
        raise RunFolderError(
            '%s is not UTF-8 text (byte %d): it is damaged or not the file '
            'finetune.py wrote. %s' % (path, error.start, CONFIG_FIX))
    except (ValueError, RecursionError) as error:  # JSONDecodeError, or
        raise RunFolderError(                      # [[[[... nested too deep
            '%s is not valid JSON (%s): damaged or cut short. %s'
            % (path, str(error)[:200], CONFIG_FIX))

"""The files of a run folder: find, read and write them, and lock the folder.

Used by runs.Run while training, and by evaluate.py, predict.py and the
tools that read a finished run. Everything is found from the folder's own
files: a folder moved or copied elsewhere works as before, and never reads
or writes the place it came from.
"""
import csv
import json
import os
import re
import shlex
import socket
import sys

# Finding checkpoints and reading config.json: run_folder.py.
from run_folder import (NUMBERED_CHECKPOINT, RunFolderError,  # noqa: F401
                        best_checkpoint, latest_checkpoint, run_config)

HISTORY_COLUMNS = ['epoch', 'train_loss', 'train_acc', 'val_loss', 'val_acc',
                   'seconds', 'images_per_sec']

#: The files that make a folder a run's: a new run never writes over them.
RUN_FILE = re.compile(r'^(history\.csv|config\.json|checkpoint|'
                      r'.*\.index|.*\.data-\d+-of-\d+)$')

LOCK_FILE = '.lock'


class SaveError(IOError):
    """A checkpoint or history.csv could not be written."""


# ---- finding checkpoints ----------------------------------------------------


def run_files(folder):
    """The names of the run's files in `folder` (empty: no run there)."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if RUN_FILE.match(name))


def checkpoint_numbers(folder, kind):
    """The N of the complete `kind`-N checkpoints in `folder`, ascending. A
    checkpoint is complete once its .index file exists: TensorFlow writes
    it last."""
    numbers = []
    for name in os.listdir(folder) if os.path.isdir(folder) else []:
        match = NUMBERED_CHECKPOINT.match(name)
        if match and match.group(1) == kind:
            numbers.append(int(match.group(2)))
    return sorted(numbers)


def remove_checkpoint(prefix):
    """Delete the files of the checkpoint `prefix` (.index, .data-*, .meta)."""
    folder, name = os.path.split(prefix)
    for file_name in os.listdir(folder or '.'):
        if file_name == name + '.index' or file_name == name + '.meta' or \
                file_name.startswith(name + '.data-'):
            os.remove(os.path.join(folder, file_name))


# ---- history.csv and config.json -------------------------------------------


def read_history(history_file):
    """The rows of a history.csv, numbers as numbers ([] if there is none).
    A damaged file raises RunFolderError naming it and the bad line."""
    if not os.path.exists(history_file):
        return []
    rows = []
    try:
        with open(history_file, newline='', encoding='utf-8') as f:
            reader = csv.DictReader(f)
            if reader.fieldnames[:1] != ['epoch']:
                raise ValueError('the header is not %s'
                                 % ','.join(HISTORY_COLUMNS))
            for row in reader:
                rows.append({key: int(value) if key == 'epoch'
                             else float(value) for key, value in row.items()})
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as error:
        raise RunFolderError(
            '%s is damaged (line %d: %s). Fix or delete that line; --resume '
            'rewrites the rows of the epochs it keeps.'
            % (history_file, len(rows) + 2, error))
    return rows


def write_history(history, history_file):
    """Rewrite history.csv whole, through a temporary file and a rename, so
    a crash never leaves it half written."""
    temporary = history_file + '.tmp'
    try:
        with open(temporary, 'w', newline='', encoding='utf-8') as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            for row in history:
                writer.writerow({key: (row[key] if key == 'epoch' else
                                       repr(float(row[key])))
                                 for key in HISTORY_COLUMNS})
        os.replace(temporary, history_file)
    except OSError as error:
        raise SaveError('Could not write %s: %s. Continue with:\n  %s'
                        % (history_file, error, resume_command()))


def write_config(record, config_file):
    """Write a run's settings, through a temporary file and a rename."""
    temporary = config_file + '.tmp'
    try:
        with open(temporary, 'w', encoding='utf-8') as f:
            json.dump(record, f, indent=2, sort_keys=True)
        os.replace(temporary, config_file)
    except OSError as error:
        raise SaveError('Could not write %s: %s' % (config_file, error))


def resume_command():
    """The command line of this run, with --resume."""
    words = [os.path.basename(sys.executable)] + sys.argv
    if '--resume' not in words:
        words.append('--resume')
    return ' '.join(shlex.quote(word) for word in words)


# ---- one run at a time -------------------------------------------------------


class RunLock(object):
    """`.lock` in a run folder: the host and process ID of the run writing
    there. A second run into the same folder is refused while the first one
    lives; the lock of a run that was killed is taken over, with a note."""

    def __init__(self, folder):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self.held = False

    def acquire(self):
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as error:
            raise RunFolderError(
                'cannot make the run folder %s (%s): choose another '
                '--checkpoint_path' % (self.folder, error))
        owner = '%s %d\n' % (socket.gethostname(), os.getpid())
        for _ in range(2):
            try:
                descriptor = os.open(self.path,
                                     os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._check_owner()
                continue
            with os.fdopen(descriptor, 'w') as f:
                f.write(owner)
            self.held = True
            return
        raise RunFolderError('cannot lock %s: another run took it just now'
                             % self.folder)

    def _check_owner(self):
        """Refuse if the lock's owner is alive; remove a stale lock."""
        try:
            with open(self.path) as f:
                host, pid = f.read().split()
            pid = int(pid)
        except (OSError, ValueError):
            host, pid = None, None
        if host == socket.gethostname() and pid is not None and \
                _process_alive(pid):
            raise RunFolderError(
                'another run (process %d) is writing into %s. Wait for it to '
                'finish, or give this one another --checkpoint_path.'
                % (pid, self.folder))
        if host not in (None, socket.gethostname()):
            raise RunFolderError(
                '%s is locked by a run on the machine %s (%s). If that run '
                'is over, delete the lock file.' % (self.folder, host,
                                                    self.path))
        print('Note: taking over the lock of a run that ended without '
              'releasing it (%s).' % self.path)
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except OSError:
                pass


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True

"""Shared test set-up: the project root on sys.path, quiet TensorFlow, and
where the real Oxford 102 images are (if they are here at all)."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tools'))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def flowers_dir():
    """$FLOWERS_DIR, or ../shared/data/oxford102 beside the project."""
    return os.environ.get('FLOWERS_DIR') or os.path.join(
        os.path.dirname(ROOT), 'shared', 'data', 'oxford102')


@pytest.fixture
def flowers():
    """The folder of the real Oxford 102 files; skips the test without it."""
    folder = flowers_dir()
    if not os.path.isdir(os.path.join(folder, 'jpg')):
        pytest.skip('real Oxford 102 images not found in %s (set FLOWERS_DIR)'
                    % folder)
    return folder

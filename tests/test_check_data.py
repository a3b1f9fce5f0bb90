"""tools/check_data.py finds every planted fault and says which kind."""
import cv2
import numpy as np

import check_data


def test_report_lists_every_problem_by_kind(tmp_path, capsys):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / 'good.jpg'),
                rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    good = (tmp_path / 'good.jpg').read_bytes()
    (tmp_path / 'empty.jpg').write_bytes(b'')
    (tmp_path / 'cut.jpg').write_bytes(good[:len(good) // 3])
    (tmp_path / 'text.jpg').write_bytes(b'hello')
    cv2.imwrite(str(tmp_path / 'dot.png'), np.zeros((1, 1, 3), np.uint8))
    images = tmp_path / 'images.txt'
    images.write_text('good.jpg 0\nempty.jpg 1\ncut.jpg 1\ntext.jpg 2\n'
                      'dot.png 0\nmissing.jpg 1\n')
    broken = tmp_path / 'broken.txt'
    broken.write_text('good.jpg\ngood.jpg 200\n')

    status = check_data.main([str(images), str(broken), '--num_classes', '3',
                              '--replacementpath='])
    out = capsys.readouterr().out
    assert status == 1
    assert 'Checked 6 images in 2 list(s): 6 problem(s).' in out
    for kind, line in (('missing file (1)', 'line 6'), ('empty file (1)', 'line 2'),
                       ('too small (1)', 'line 5'),
                       ('unreadable (corrupt, truncated or not an image) (2)', 'line 3')):
        assert kind in out and line in out
    assert 'line 1: no label' in out and 'label 200 is outside 0..2' in out
    assert 'good.jpg line 1' not in out


def test_clean_lists_pass(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / 'a.jpg'), np.full((40, 40, 3), 128, np.uint8))
    (tmp_path / 'list.txt').write_text('a.jpg 0\n')
    assert check_data.main([str(tmp_path / 'list.txt'), '--loader', 'pil',
                            '--replacementpath=']) == 0
    assert '0 problem(s)' in capsys.readouterr().out


def test_corrupt_scans_and_float_tiffs_have_their_own_headings(tmp_path,
                                                               capsys):
    from test_imagefiles import CORRUPT
    (tmp_path / 'damaged.jpg').write_bytes(CORRUPT['a chunk deleted'])
    cv2.imwrite(str(tmp_path / 'float.tiff'),
                np.full((40, 40), 0.5, np.float32))
    cv2.imwrite(str(tmp_path / 'fine.jpg'), np.full((40, 40, 3), 90, np.uint8))
    (tmp_path / 'list.txt').write_text('damaged.jpg 0\nfloat.tiff 1\n'
                                       'fine.jpg 1\n')
    for loader in ('opencv', 'pil'):
        assert check_data.main([str(tmp_path / 'list.txt'), '--loader',
                                loader, '--replacementpath=']) == 1
        out = capsys.readouterr().out
        assert 'Checked 3 images in 1 list(s): 2 problem(s).' in out
        assert 'corrupt JPEG data (a damaged picture) (1):' in out
        assert 'list.txt line 1:' in out and 'damaged.jpg' in out
        assert 'unsupported samples (float or 32-bit) (1):' in out
        assert 'list.txt line 2:' in out and 'line 3:' not in out


def test_missing_images_are_said_to_refuse_a_run_and_where_they_are(
        tmp_path, capsys):
    images = tmp_path / 'dataset' / 'jpg'
    images.mkdir(parents=True)
    cv2.imwrite(str(images / 'a.jpg'), np.full((40, 40, 3), 90, np.uint8))
    (tmp_path / 'list.txt').write_text('jpg/a.jpg 0\n')
    assert check_data.main([str(tmp_path / 'list.txt'), '--replacementpath',
                            str(tmp_path / 'dataset')]) == 1
    out = capsys.readouterr().out
    assert 'Checked 1 images in 1 list(s): 1 problem(s).' in out
    assert 'refuses to start while any listed image is missing' in out
    assert ('the images are in %s: set replacementpath to it' % images) in out

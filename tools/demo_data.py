"""Make a small image set that AlexNet learns in a minute from scratch.

Four kinds of generated pictures, one per class, saved as JPEG files with a
training and a validation list in the usual `<path> <label>` format:

    0 red disc     1 green square     2 blue stripes     3 yellow triangle

on a noisy background of random colour, at a random place and size. Used by
`finetune.py --demo` and by the tests; run it to look at the pictures:

    python tools/demo_data.py OUT_DIR
"""
import argparse
import os

import numpy as np

CLASS_NAMES = ['red disc', 'green square', 'blue stripes', 'yellow triangle']
_COLOURS_BGR = [(40, 40, 220), (40, 200, 40), (220, 60, 30), (30, 220, 230)]


def draw_image(label, rng, size=(256, 320)):
    """One uint8 BGR picture of class `label`."""
    import cv2
    height, width = size
    background = rng.integers(0, 256, 3)
    image = np.clip(background + rng.normal(0, 25, (height, width, 3)),
                    0, 255).astype(np.uint8)
    colour = tuple(int(c) for c in np.clip(
        np.array(_COLOURS_BGR[label]) + rng.integers(-25, 26, 3), 0, 255))
    r = int(rng.integers(40, 90))
    cx, cy = int(rng.integers(r, width - r)), int(rng.integers(r, height - r))
    if label == 0:
        cv2.circle(image, (cx, cy), r, colour, -1)
    elif label == 1:
        cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    elif label == 2:
        for x in range(cx - r, cx + r, 16):
            cv2.rectangle(image, (x, cy - r), (x + 7, cy + r), colour, -1)
    else:
        corners = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]])
        cv2.fillPoly(image, [corners.astype(np.int32)], colour)
    return image


def make_demo_dataset(folder, train_per_class=30, val_per_class=10, seed=0):
    """Write the images and `train.txt`, `val.txt` into `folder`.

    Returns the paths of the two lists. The list paths are relative
    (`images/...`), so the lists work wherever the folder is moved.
    """
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, 'images'), exist_ok=True)
    lists = {}
    for split, per_class in (('train', train_per_class),
                             ('val', val_per_class)):
        lines = []
        for label in range(len(CLASS_NAMES)):
            for i in range(per_class):
                name = 'images/%s_%d_%03d.jpg' % (split, label, i)
                cv2.imwrite(os.path.join(folder, name),
                            draw_image(label, rng))
                lines.append('%s %d\n' % (name, label))
        lists[split] = os.path.join(folder, split + '.txt')
        with open(lists[split], 'w') as f:
            f.writelines(lines)
    return lists['train'], lists['val']


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    parser.add_argument('--train_per_class', type=int, default=30)
    parser.add_argument('--val_per_class', type=int, default=10)
    args = parser.parse_args()
    print('wrote %s and %s' % make_demo_dataset(
        args.out_dir, args.train_per_class, args.val_per_class))

"""An independent NumPy forward pass of Caffe's bvlc_alexnet, for the tests.

Written from Caffe's definitions (deploy.prototxt and the layer code), not
from alexnet.py: NCHW tensors as Caffe stores them, explicit zero padding,
Caffe's pooling output size ceil((in - k) / s) + 1, Caffe's LRN formula
b = a / (k + alpha / n * sum_window a^2) ** beta, and pool5 flattened in
Caffe's C, H, W order, so fc6's rows are rearranged from the HWC order of the
TensorFlow weights file.
"""
import numpy as np


def conv(x, w_hwio, b, stride, pad, groups):
    """x: (N, C, H, W); w_hwio as in bvlc_alexnet.npy; Caffe's convolution."""
    w = w_hwio.transpose(3, 2, 0, 1)  # -> (out, in/group, kh, kw), Caffe's
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, width = x.shape
    out_c, in_per_group, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (width - kw) // stride + 1
    out = np.empty((n, out_c, oh, ow), np.float64)
    per_group = out_c // groups
    for g in range(groups):
        xg = x[:, g * in_per_group:(g + 1) * in_per_group]
        wg = w[g * per_group:(g + 1) * per_group]
        patches = windows(xg, kh, kw, stride, oh, ow)  # (n, c, oh, ow, kh, kw)
        out[:, g * per_group:(g + 1) * per_group] = np.einsum(
            'ncyxij,ocij->noyx', patches, wg, optimize=True)
    return out + b[None, :, None, None]


def windows(x, kh, kw, stride, oh, ow):
    """Every kh x kw window of x (n, c, h, w) at the given stride, as a view
    (n, c, oh, ow, kh, kw); as_strided, which NumPy 1.17 has."""
    n, c, h, w = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (x.shape[0], x.shape[1], oh, ow, kh, kw),
        (n, c, h * stride, w * stride, h, w), writeable=False)


def relu(x):
    return np.maximum(x, 0)


def lrn(x, size=5, alpha=1e-4, beta=0.75, k=1.0):
    """Caffe's ACROSS_CHANNELS LRN."""
    squares = np.pad(x ** 2, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
    window = sum(squares[:, i:i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def max_pool(x, size=3, stride=2):
    n, c, h, w = x.shape
    oh = int(np.ceil((h - size) / stride)) + 1
    ow = int(np.ceil((w - size) / stride)) + 1
    out = np.full((n, c, oh, ow), -np.inf)
    for y in range(oh):
        for z in range(ow):
            out[:, :, y, z] = x[:, :, y * stride:y * stride + size,
                                z * stride:z * stride + size].max(axis=(2, 3))
    return out


def forward(images_nhwc, layers, lrn_size=5, lrn_alpha=1e-4):
    """Logits of a batch of BGR-minus-mean images (N, 227, 227, 3); the LRN
    parameters are Caffe's unless changed (to check that a mistake in them
    would be seen)."""
    x = images_nhwc.astype(np.float64).transpose(0, 3, 1, 2)
    p = {name: [np.asarray(a, np.float64) for a in (v['weights'], v['biases'])]
         for name, v in layers.items()}
    norm = dict(size=lrn_size, alpha=lrn_alpha)
    x = max_pool(lrn(relu(conv(x, *p['conv1'], stride=4, pad=0, groups=1)),
                     **norm))
    x = max_pool(lrn(relu(conv(x, *p['conv2'], stride=1, pad=2, groups=2)),
                     **norm))
    x = relu(conv(x, *p['conv3'], stride=1, pad=1, groups=1))
    x = relu(conv(x, *p['conv4'], stride=1, pad=1, groups=2))
    x = max_pool(relu(conv(x, *p['conv5'], stride=1, pad=1, groups=2)))
    n = x.shape[0]
    flat_chw = x.reshape(n, -1)  # Caffe flattens (C, H, W)
    # The weights file orders fc6's rows (H, W, C); reorder them to (C, H, W).
    w6 = p['fc6'][0].reshape(6, 6, 256, -1).transpose(2, 0, 1, 3).reshape(9216, -1)
    x = relu(flat_chw @ w6 + p['fc6'][1])
    x = relu(x @ p['fc7'][0] + p['fc7'][1])
    return x @ p['fc8'][0] + p['fc8'][1]

#!/usr/bin/env python3
"""PyTorch CPU anchor for bench/gradients.ts (issue 7): the same network, the same weights.

    python3 bench/pytorch_anchor.py <model dir> <io dir> [--reps N] [--threads N]
    python3 bench/pytorch_anchor.py --ceiling '[[n, h, ci, co, k], ...]' [--reps N] [--threads N]

Reads the TF.js LayersModel (model.json topology + weight shards) that the benchmark timed, builds
the same graph in PyTorch (NCHW, TF's asymmetric 'same' padding reproduced with F.pad), and times
the forward pass and the input gradient (sum over the batch of logit[b, target_b], the saliency
gradient) on the CPU. <io dir> holds x.bin (NHWC float32), meta.json, and convlens's logits.bin and
grad.bin, which are compared with PyTorch's so that both really run the same net. With --ceiling
it times single convolutions of the given shapes instead (GFLOP/s).

Prints one JSON line on stdout. PyTorch is never a dependency of convlens: when it is missing,
Debian's python3-torch is installed with apt-get (root only); otherwise the script says why it
skips and exits with status 3.
"""
import json
import os
import shutil
import subprocess
import sys
import time


def ensure_torch():
    try:
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    debian_python = '/usr/bin/python3'
    # apt's python3-torch lands in Debian's own python; re-run under it if it already has torch.
    if os.path.realpath(sys.executable) != os.path.realpath(debian_python) and os.path.exists(debian_python):
        probe = subprocess.run([debian_python, '-c', 'import torch'], capture_output=True)
        if probe.returncode == 0:
            os.execv(debian_python, [debian_python] + sys.argv)
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        print('PyTorch is not installed and this is not root with apt-get: '
              'install python3-torch (Debian) or torch (pip) to get the anchor', flush=True)
        sys.exit(3)
    print('installing Debian python3-torch (apt-get install -y python3-torch) ...', file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    r = subprocess.run(['apt-get', 'install', '-y', 'python3-torch'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        print(f'apt-get install python3-torch failed: {r.stderr.strip().splitlines()[-1:]}', flush=True)
        sys.exit(3)
    os.execv(debian_python, [debian_python] + sys.argv)


ensure_torch()

import numpy as np  # noqa: E402  (comes with python3-torch)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def load_weights(model_dir, manifest):
    out = {}
    for group in manifest:
        raw = b''.join(open(os.path.join(model_dir, p), 'rb').read() for p in group['paths'])
        off = 0
        for w in group['weights']:
            if w.get('dtype', 'float32') != 'float32' or 'quantization' in w:
                raise SystemExit(f"{model_dir}/model.json: weight {w['name']} is {w.get('dtype')}/quantized; the anchor reads float32 only")
            n = int(np.prod(w['shape'])) if w['shape'] else 1
            out[w['name']] = torch.from_numpy(np.frombuffer(raw, dtype='<f4', count=n, offset=off).reshape(w['shape']).copy())
            off += 4 * n
    return out


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def tf_pad(x, k, s, d, padding, value=0.0):
    """TF's 'same' pads (k−1)·d+1 − stride-remainder, the extra pixel at the bottom/right."""
    if padding != 'same':
        return x
    pads = []
    for size, kk, ss, dd in zip(x.shape[2:], k, s, d):
        out = -(-size // ss)
        total = max((out - 1) * ss + (kk - 1) * dd + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    (pt, pb), (pl, pr) = pads
    return F.pad(x, (pl, pr, pt, pb), value=value) if (pt or pb or pl or pr) else x


def activation(name, x):
    if name in (None, 'linear'):
        return x
    if name == 'relu':
        return F.relu(x)
    if name == 'relu6':
        return F.relu6(x)
    if name == 'softmax':
        return F.softmax(x, dim=1)
    if name == 'sigmoid':
        return torch.sigmoid(x)
    if name == 'tanh':
        return torch.tanh(x)
    raise SystemExit(f'pytorch_anchor: activation {name!r} is not supported')


class Net(torch.nn.Module):
    """Runs a Keras (tfjs-layers) topology in NCHW with the model's weights."""

    def __init__(self, topology, weights):
        super().__init__()
        cfg = topology['config']
        self.sequential = topology['class_name'] == 'Sequential'
        self.layers = cfg['layers']
        self.w = {}
        for name, t in weights.items():
            self.w[name] = t
        if not self.sequential:
            self.output_name = cfg['output_layers'][0][0]

    def weight(self, layer, key):
        for name, t in self.w.items():
            if name.startswith(layer + '/') and name.endswith('/' + key):
                return t
        return None

    def apply(self, layer, inputs):
        cls = layer['class_name']
        c = layer['config']
        name = c['name']
        x = inputs[0]
        if cls == 'InputLayer':
            return x
        if cls == 'Conv2D':
            k = self.weight(name, 'kernel').permute(3, 2, 0, 1).contiguous()
            b = self.weight(name, 'bias') if c.get('use_bias', True) else None
            ks, st, dl = pair(c['kernel_size']), pair(c['strides']), pair(c.get('dilation_rate', 1))
            y = F.conv2d(tf_pad(x, ks, st, dl, c['padding']), k, b, stride=st, dilation=dl)
            return activation(c.get('activation'), y)
        if cls == 'DepthwiseConv2D':
            k = self.weight(name, 'depthwise_kernel')
            kh, kw, ci, m = k.shape
            k = k.reshape(kh, kw, ci * m).permute(2, 0, 1).unsqueeze(1).contiguous()
            b = self.weight(name, 'bias') if c.get('use_bias', True) else None
            ks, st, dl = pair(c['kernel_size']), pair(c['strides']), pair(c.get('dilation_rate', 1))
            y = F.conv2d(tf_pad(x, ks, st, dl, c['padding']), k, b, stride=st, dilation=dl, groups=ci)
            return activation(c.get('activation'), y)
        if cls == 'BatchNormalization':
            return F.batch_norm(x, self.weight(name, 'moving_mean'), self.weight(name, 'moving_variance'),
                                self.weight(name, 'gamma'), self.weight(name, 'beta'), False, 0.0, c.get('epsilon', 1e-3))
        if cls == 'ReLU':
            mx = c.get('max_value')
            if c.get('negative_slope', 0) or c.get('threshold', 0):
                raise SystemExit('pytorch_anchor: ReLU with negative_slope/threshold is not supported')
            # F.relu6 and F.relu pass no gradient at x = 0, like TF.js (clamp would pass it there,
            # and exact zeros are common after dead channels)
            if mx is None:
                return F.relu(x)
            return F.relu6(x) if float(mx) == 6.0 else torch.clamp(x, 0.0, float(mx))
        if cls == 'Activation':
            return activation(c['activation'], x)
        if cls in ('MaxPooling2D', 'AveragePooling2D'):
            ps = pair(c['pool_size'])
            st = pair(c.get('strides') or c['pool_size'])
            if cls == 'MaxPooling2D':
                return F.max_pool2d(tf_pad(x, ps, st, (1, 1), c['padding'], float('-inf')), ps, st)
            if c['padding'] != 'valid':
                raise SystemExit('pytorch_anchor: AveragePooling2D with padding same is not supported')
            return F.avg_pool2d(x, ps, st)
        if cls == 'GlobalAveragePooling2D':
            return x.mean(dim=(2, 3))
        if cls == 'Dense':
            y = F.linear(x, self.weight(name, 'kernel').t(), self.weight(name, 'bias') if c.get('use_bias', True) else None)
            return activation(c.get('activation'), y)
        if cls == 'Add':
            y = inputs[0]
            for t in inputs[1:]:
                y = y + t
            return y
        if cls in ('Dropout', 'SpatialDropout2D'):
            return x
        raise SystemExit(f'pytorch_anchor: layer class {cls} ({name}) is not supported')

    def forward(self, x, upto=None):
        if self.sequential:
            for layer in self.layers:
                x = self.apply(layer, [x])
                if layer['config']['name'] == upto:
                    return x
            return x
        values = {}
        for layer in self.layers:  # tfjs-layers saves functional layers in topological order
            name = layer['config']['name']
            inbound = layer.get('inbound_nodes') or []
            ins = [values[n[0]] for n in inbound[0]] if inbound else [x]
            values[name] = self.apply(layer, ins)
            if name == upto:
                return values[name]
        return values[self.output_name]


def rel_err(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def timed(reps, f):
    f()  # warm-up
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return sorted(ts)[len(ts) // 2]


def conv_ceiling(shapes_json, reps, threads):
    """GFLOP/s of single conv2d calls (NCHW, 'same'), for the ceiling table of bench/gradients.ts."""
    torch.set_num_threads(threads)
    out = []
    for n, h, ci, co, k in json.loads(shapes_json):
        x = torch.randn(n, ci, h, h)
        w = torch.randn(co, ci, k, k)
        with torch.no_grad():
            t = timed(max(reps, 10), lambda: F.conv2d(x, w, padding=k // 2))
        out.append(2 * n * h * h * ci * co * k * k / t / 1e9)
    print(json.dumps({'gflops': out, 'torch': torch.__version__, 'threads': torch.get_num_threads()}), flush=True)


def main():
    args = sys.argv[1:]
    if '--ceiling' in args:
        reps = int(args[args.index('--reps') + 1]) if '--reps' in args else 10
        threads = int(args[args.index('--threads') + 1]) if '--threads' in args else 1
        return conv_ceiling(args[args.index('--ceiling') + 1], reps, threads)
    if len(args) < 2:
        raise SystemExit(__doc__)
    model_dir, io_dir = args[0], args[1]
    reps = int(args[args.index('--reps') + 1]) if '--reps' in args else 3
    threads = int(args[args.index('--threads') + 1]) if '--threads' in args else (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    mj = json.load(open(os.path.join(model_dir, 'model.json')))
    net = Net(mj['modelTopology'], load_weights(model_dir, mj['weightsManifest'])).eval()
    meta = json.load(open(os.path.join(io_dir, 'meta.json')))
    b, (h, w, c) = meta['batch'], meta['inputShape']
    x_nhwc = np.fromfile(os.path.join(io_dir, 'x.bin'), dtype='<f4').reshape(b, h, w, c)
    x = torch.from_numpy(x_nhwc).permute(0, 3, 1, 2).contiguous()
    targets = torch.tensor(meta['targets'])
    upto = meta['scoreLayer']

    def fwd():
        with torch.no_grad():
            return net(x, upto)

    def grad():
        xi = x.clone().requires_grad_(True)
        logits = net(xi, upto)
        logits.gather(1, targets[:, None]).sum().backward()
        return xi.grad

    logits = fwd().numpy()
    g = grad().permute(0, 2, 3, 1).numpy()
    ours_logits = np.fromfile(os.path.join(io_dir, 'logits.bin'), dtype='<f4').reshape(logits.shape)
    ours_grad = np.fromfile(os.path.join(io_dir, 'grad.bin'), dtype='<f4').reshape(g.shape)
    tf_ = timed(reps, fwd)
    tg = timed(reps, grad)
    print(json.dumps({
        'forward': b / tf_, 'grad': b / tg, 'torch': torch.__version__, 'threads': torch.get_num_threads(),
        'logitsRelErr': rel_err(ours_logits, logits), 'gradRelErr': rel_err(ours_grad, g),
    }), flush=True)


if __name__ == '__main__':
    main()

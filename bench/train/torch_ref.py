#!/usr/bin/env python3
"""PyTorch CPU reference for the trainer benchmark (bench/train/run.js, nets in bench/nets.md).

Builds the same U-Net as lazylabel's buildUNet (3x3(x3) 'same' convs + ReLU, two per level, max
pooling, nearest upsampling, concat [skip, up], 1x1(x1) conv + softmax), the ELEKTRONN lazy-label NLL
('voxels' normalisation) and Adam(lr 1e-3), then times training steps and forward passes on the CPU.

    /usr/bin/python3 bench/train/torch_ref.py --net '{"dims":2,...}' --threads 2 --steps 20 --warmup 3

Prints one JSON object on stdout. Run by bench/train/run.js; see there for the meaning of the fields.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-6


def block(conv, cin, cout):
    return nn.Sequential(conv(cin, cout, 3, padding=1), nn.ReLU(), conv(cout, cout, 3, padding=1), nn.ReLU())


class UNet(nn.Module):
    """Channels first (PyTorch's native layout): x [B, C, (Z,) Y, X] -> probabilities [B, n_lab, (Z,) Y, X]."""

    def __init__(self, dims, n_lab, in_ch, depth, base, aniso=0):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.dims = dims
        self.pools = [(2, 2) if dims == 2 else ((1, 2, 2) if l < aniso else (2, 2, 2)) for l in range(depth)]
        self.down = nn.ModuleList()
        ch = in_ch
        for l in range(depth):
            self.down.append(block(conv, ch, base * 2 ** l))
            ch = base * 2 ** l
        self.bottom = block(conv, ch, base * 2 ** depth)
        ch = base * 2 ** depth
        self.up = nn.ModuleList()
        for l in reversed(range(depth)):
            self.up.append(block(conv, base * 2 ** l + ch, base * 2 ** l))
            ch = base * 2 ** l
        self.head = conv(ch, n_lab, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                if m is self.head:
                    nn.init.xavier_uniform_(m.weight)  # tfjs: glorotUniform
                else:
                    nn.init.kaiming_normal_(m.weight, mode='fan_in', nonlinearity='relu')  # tfjs: heNormal
                nn.init.zeros_(m.bias)

    def forward(self, x):
        pool = F.max_pool2d if self.dims == 2 else F.max_pool3d
        skips = []
        for blk, pf in zip(self.down, self.pools):
            x = blk(x)
            skips.append(x)
            x = pool(x, pf, pf)
        x = self.bottom(x)
        for blk, pf in zip(self.up, reversed(self.pools)):
            x = F.interpolate(x, scale_factor=pf, mode='nearest')
            x = blk(torch.cat([skips.pop(), x], 1))
        return torch.softmax(self.head(x), 1)


def lazy_nll(p, y, labelled, not_present):
    """ELEKTRONN ConvLayer3d.NLL ('voxels' normalisation), the formula lazylabel's lazyNll implements.

    p [B, C, ...] probabilities, y [B, ...] int64 with -1 = unlabelled, labelled / not_present [B, C] 0/1.
    up = sum -log(p_y + eps) over labelled voxels of labelled classes; dn = sum over all voxels and
    classes of -log(1 - p_c * np_c + eps); loss = (up + dn) / (N_up + V * sum(np)).
    """
    b, c = p.shape[:2]
    p = p.reshape(b, c, -1)
    v = p.shape[2]
    sel = (y.reshape(b, 1, v) == torch.arange(c).view(1, c, 1)).float() * labelled.view(b, c, 1)
    up = -(torch.log(p + EPS) * sel).sum()
    dn = -torch.log(1 - p * not_present.view(b, c, 1) + EPS).sum()
    n = sel.sum() + v * not_present.sum()
    return (up + dn) / torch.where(n == 0, torch.ones_like(n), n)


def make_batch(net, batch, gen):
    """Same recipe as run.js: raw ~ N(0, 1); even examples fully labelled (classes 0..n-1, 10% -1), odd
    examples lazily labelled (only classes 0..n-2 occur, the last class is flagged not present)."""
    spatial = net['patch']
    n_lab = net['nLab']
    x = torch.randn((batch, net['inChannels'], *spatial), generator=gen)
    y = torch.randint(0, n_lab, (batch, *spatial), generator=gen)
    labelled = torch.ones(batch, n_lab)
    not_present = torch.zeros(batch, n_lab)
    for i in range(batch):
        if i % 2 == 1:
            y[i] = torch.randint(0, n_lab - 1, tuple(spatial), generator=gen)
            labelled[i, n_lab - 1] = 0
            not_present[i, n_lab - 1] = 1
    y[torch.rand(y.shape, generator=gen) < 0.1] = -1
    return x, y, labelled, not_present


def cpu_snapshot():
    """(wall s, own CPU s of this process (all threads), busy CPU s of the whole machine)."""
    with open('/proc/stat') as f:
        parts = f.readline().split()[1:]
    vals = [int(v) for v in parts]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    busy = vals[0] + vals[1] + vals[2] + vals[5] + vals[6] + (vals[7] if len(vals) > 7 else 0)
    return time.perf_counter(), time.process_time(), busy / os.sysconf('SC_CLK_TCK')


def cpu_stats(a, b):
    wall = b[0] - a[0]
    own = (b[1] - a[1]) / wall
    machine = (b[2] - a[2]) / wall
    return {'wallS': round(wall, 3), 'ownCores': round(own, 3), 'machineBusyCores': round(machine, 3),
            'otherCores': round(max(0.0, machine - own), 3), 'loadavg': list(os.getloadavg())}


def cpu_capability():
    for line in torch.__config__.show().splitlines():
        if 'CPU capability usage' in line:
            return line.split(':', 1)[1].strip()
    return None


def summary(ms):
    s = sorted(ms)
    return {'median': statistics.median(s), 'min': s[0], 'max': s[-1],
            'p90': s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))], 'n': len(s), 'all': [round(t, 2) for t in ms]}


# Same shapes as CEILING_OPS in ceiling.js.
CEILING_OPS = [
    {'op': 'matmul', 'm': 2048, 'k': 1024, 'n': 1024},
    {'op': 'conv2d', 'n': 1, 'h': 64, 'w': 64, 'ci': 64, 'co': 64, 'f': 3},
    {'op': 'conv2d', 'n': 4, 'h': 128, 'w': 128, 'ci': 16, 'co': 16, 'f': 3},
]


def ceiling(reps):
    out = {'impl': 'pytorch', 'torch': torch.__version__, 'threads': torch.get_num_threads(), 'ops': []}
    with torch.inference_mode():
        for o in CEILING_OPS:
            if o['op'] == 'matmul':
                a, b = torch.randn(o['m'], o['k']), torch.randn(o['k'], o['n'])
                run = lambda: torch.mm(a, b)
                fl = 2 * o['m'] * o['k'] * o['n']
            else:
                x, w = torch.randn(o['n'], o['ci'], o['h'], o['w']), torch.randn(o['co'], o['ci'], o['f'], o['f'])
                run = lambda: F.conv2d(x, w, padding=o['f'] // 2)
                fl = 2 * o['n'] * o['h'] * o['w'] * o['ci'] * o['co'] * o['f'] ** 2
            for _ in range(3):
                run()
            t = []
            for _ in range(reps):
                t0 = time.perf_counter()
                run()
                t.append((time.perf_counter() - t0) * 1e3)
            ms = statistics.median(t)
            out['ops'].append({**o, 'ms': ms, 'gflops': round(fl / (ms / 1e3) / 1e9, 1)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--net', required=True, help='JSON net spec (see run.js NETS)')
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--params-only', action='store_true')
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--ceiling', action='store_true', help='GFLOP/s of the ceiling ops (see ceiling.js) instead')
    args = ap.parse_args()
    if args.ceiling:
        torch.set_num_threads(args.threads)
        print(json.dumps(ceiling(args.steps)))
        return
    net = json.loads(args.net)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = UNet(net['dims'], net['nLab'], net['inChannels'], net['depth'], net['baseFilters'], net.get('anisotropicLevels', 0))
    params = sum(p.numel() for p in model.parameters())
    info = {
        'impl': 'pytorch', 'torch': torch.__version__, 'threads': torch.get_num_threads(),
        'interopThreads': torch.get_num_interop_threads(), 'mkldnn': torch.backends.mkldnn.is_available(),
        'cpuCapability': cpu_capability(),
        'python': sys.version.split()[0], 'params': params,
    }
    if args.params_only:
        print(json.dumps(info))
        return
    gen = torch.Generator().manual_seed(args.seed)
    x, y, labelled, not_present = make_batch(net, net['batch'], gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def train_step():
        opt.zero_grad(set_to_none=True)
        loss = lazy_nll(model(x), y, labelled, not_present)
        loss.backward()
        opt.step()
        return loss.item()

    model.train()
    losses = []
    for _ in range(args.warmup):
        losses.append(train_step())
    times = []
    a = cpu_snapshot()
    for _ in range(args.steps):
        t0 = time.perf_counter()
        losses.append(train_step())
        times.append((time.perf_counter() - t0) * 1e3)
    train_cpu = cpu_stats(a, cpu_snapshot())

    model.eval()
    xi = x[:1].contiguous()
    infer = {}
    for name, inp in (('batch1', xi), ('trainBatch', x)):
        with torch.inference_mode():
            for _ in range(args.warmup):
                model(inp)
            t = []
            a = cpu_snapshot()
            for _ in range(args.steps):
                t0 = time.perf_counter()
                out = model(inp)
                t.append((time.perf_counter() - t0) * 1e3)
                assert out.shape[1] == net['nLab']
            infer[name] = {'ms': summary(t), 'cpu': cpu_stats(a, cpu_snapshot())}

    info.update({
        'train': {'ms': summary(times), 'cpu': train_cpu, 'lossFirst': losses[0], 'lossLast': losses[-1]},
        'infer': infer,
        'maxRssMB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    })
    print(json.dumps(info))


if __name__ == '__main__':
    main()

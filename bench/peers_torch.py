#!/usr/bin/env python3
"""PyTorch peer of bench/peers.ts: the same training steps at the same sizes, in eager mode.

Each case builds the networks the engine's step uses (same layers, widths, batch, optimiser and number of
parameter updates), draws its minibatch from 100k random transitions held on the device, runs untimed
warm-up steps, then times the steps with a device sync at the end. Prints one JSON object on stdout; progress
goes to stderr. Uses CUDA when available unless --device cpu.
"""
import argparse
import json
import math
import os
import sys
import time

CASES = ['iql-critic', 'srpo-behavior-2048', 'srpo-behavior-256', 'srpo-actor', 'matmul-1024']


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cases', default=','.join(CASES), help='comma-separated cases (default: all): ' + ', '.join(CASES))
    p.add_argument('--steps', type=int, default=5, help='timed steps per case (default 5)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps per case before timing (default 1)')
    p.add_argument('--plan', default=None, help='JSON {case: [warmup, steps]} overriding --steps/--warmup per case')
    p.add_argument('--obs', type=int, default=11, help='observation size (default: Hopper, 11)')
    p.add_argument('--act', type=int, default=3, help='action size (default: Hopper, 3)')
    p.add_argument('--transitions', type=int, default=100_000, help='size of the random dataset minibatches come from')
    p.add_argument('--threads', type=int, default=0, help='CPU threads (default: all cores)')
    p.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    return p.parse_args()


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def main():
    args = parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except Exception as e:  # reported as a skipped peer, not a crash
        print(json.dumps({'error': f'cannot import torch: {e}', 'python': sys.version.split()[0]}))
        return

    cases = [c for c in args.cases.split(',') if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        sys.exit(f'peers_torch: unknown case(s) {", ".join(unknown)}; known: {", ".join(CASES)}')
    plan = {c: [args.warmup, args.steps] for c in cases}
    if args.plan:
        for c, ws in json.loads(args.plan).items():
            plan[c] = [int(ws[0]), int(ws[1])]
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.device == 'auto':
        dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    else:
        dev = torch.device(args.device)
    torch.manual_seed(0)
    obs_dim, act_dim = args.obs, args.act

    def sync():
        if dev.type == 'cuda':
            torch.cuda.synchronize()

    # ---- data: rows [obs, action, reward, next obs, not done], as the engine's replay store
    n = args.transitions
    width = 2 * obs_dim + act_dim + 2
    data = torch.rand(n, width, device=dev) * 2 - 1
    data[:, -1] = 1.0

    def sample(batch):
        rows = data[torch.randint(n, (batch,), device=dev)]
        return torch.split(rows, [obs_dim, act_dim, 1, obs_dim, 1], dim=1)

    # ---- networks
    def mlp(widths, out_act=None):
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        if out_act is not None:
            layers.append(out_act)
        return nn.Sequential(*layers).to(dev)

    class TwinQ(nn.Module):
        def __init__(self):
            super().__init__()
            self.q1 = mlp([obs_dim + act_dim, 256, 256, 1])
            self.q2 = mlp([obs_dim + act_dim, 256, 256, 1])

        def forward(self, sa):
            return self.q1(sa), self.q2(sa)

    class ResidualBlock(nn.Module):
        def __init__(self, h):
            super().__init__()
            self.dropout = nn.Dropout(0.1)
            self.layer_norm = nn.LayerNorm(h)
            self.fc1 = nn.Linear(h, 4 * h)
            self.fc2 = nn.Linear(4 * h, h)

        def forward(self, x):
            return x + self.fc2(F.mish(self.fc1(self.layer_norm(self.dropout(x)))))

    class ScoreNet(nn.Module):
        """SRPO's ScoreNet_IDQL: Gaussian Fourier time features -> MLP, then an MLPResNet on [x, s, t_emb]."""

        def __init__(self, hidden=256, blocks=3, embed=64, cond=128):
            super().__init__()
            self.register_buffer('W', torch.randn(embed // 2) * 30)
            self.cond_model = nn.Sequential(nn.Linear(embed, cond), nn.Mish(), nn.Linear(cond, cond))
            self.fc = nn.Linear(act_dim + obs_dim + cond, hidden)
            self.blocks = nn.Sequential(*[ResidualBlock(hidden) for _ in range(blocks)])
            self.out_fc = nn.Linear(hidden, act_dim)

        def forward(self, x, t, s):
            proj = t[:, None] * self.W[None, :] * (2 * math.pi)
            t_emb = self.cond_model(torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1))
            h = self.blocks(self.fc(torch.cat([x, s, t_emb], dim=-1)))
            return self.out_fc(F.mish(h))

    beta0, beta1 = 0.1, 20.0

    def vp_noise(x0, t_min, t_max):
        t = torch.rand(x0.shape[0], device=dev) * (t_max - t_min) + t_min
        z = torch.randn_like(x0)
        log_alpha = -0.25 * t * t * (beta1 - beta0) - 0.5 * t * beta0
        alpha = torch.exp(log_alpha)
        sigma = torch.sqrt(-torch.expm1(2 * log_alpha))
        return alpha[:, None] * x0 + sigma[:, None] * z, t, z, alpha, sigma

    def polyak(target, source, tau):
        tp = [p for p in target.parameters()]
        sp = [p for p in source.parameters()]
        with torch.no_grad():
            torch._foreach_mul_(tp, 1 - tau)
            torch._foreach_add_(tp, sp, alpha=tau)

    # ---- the cases: each returns a step function and a tensor to read at the end
    def iql_critic():
        q, v = TwinQ().to(dev), mlp([obs_dim, 256, 256, 1])
        q_target = TwinQ().to(dev)
        q_target.load_state_dict(q.state_dict())
        q_target.requires_grad_(False)
        q_opt = torch.optim.Adam(q.parameters(), lr=3e-4)
        v_opt = torch.optim.Adam(v.parameters(), lr=3e-4)
        expectile, discount, tau = 0.7, 0.99, 0.005

        def step():
            obs, act, rew, next_obs, not_done = sample(256)
            sa = torch.cat([obs, act], dim=1)
            with torch.no_grad():
                next_v = v(next_obs)
                q_min = torch.min(*q_target(sa))
            u = q_min - v(obs)
            v_loss = (torch.abs(expectile - (u < 0).float()) * u * u).mean()
            v_opt.zero_grad(set_to_none=True)
            v_loss.backward()
            v_opt.step()
            target = rew + discount * not_done * next_v
            q1, q2 = q(sa)
            q_loss = 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))
            q_opt.zero_grad(set_to_none=True)
            q_loss.backward()
            q_opt.step()
            polyak(q_target, q, tau)

        return step, lambda: next(q_target.parameters())

    def srpo_behavior(batch):
        def make():
            net = ScoreNet().to(dev)
            opt = torch.optim.AdamW(net.parameters(), lr=3e-4, weight_decay=0.01)

            def step():
                obs, act, _, _, _ = sample(batch)
                net.train()
                xt, t, z, _, _ = vp_noise(act, 1e-3, 1.0)
                loss = ((net(xt, t, obs) - z) ** 2).sum(dim=1).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step, lambda: next(net.parameters())

        return make

    def srpo_actor():
        actor = mlp([obs_dim, 256, 256, act_dim], out_act=nn.Tanh())
        behavior = ScoreNet().to(dev).eval().requires_grad_(False)
        q_target = TwinQ().to(dev).requires_grad_(False)
        opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
        beta = 0.05

        def step():
            obs = sample(256)[0]
            a = actor(obs)
            with torch.no_grad():
                xt, t, _, _, sigma = vp_noise(a.detach(), 0.02, 0.98)
                eps = behavior(xt, t, obs)
            a_ = a.detach().requires_grad_(True)
            q1, q2 = q_target(torch.cat([obs, a_], dim=1))
            g = torch.autograd.grad(0.5 * (q1.sum() + q2.sum()), a_)[0]
            loss = (sigma * sigma * (eps * a).sum(dim=1) - beta * (g * a).sum(dim=1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step, lambda: next(actor.parameters())

    def matmul():
        a = torch.randn(1024, 1024, device=dev)
        b = torch.randn(1024, 1024, device=dev)
        out = [a]

        def step():
            out[0] = a @ b

        return step, lambda: out[0]

    makers = {
        'iql-critic': iql_critic,
        'srpo-behavior-2048': srpo_behavior(2048),
        'srpo-behavior-256': srpo_behavior(256),
        'srpo-actor': srpo_actor,
        'matmul-1024': matmul,
    }
    results = {}
    for case in cases:
        warmup, steps = plan[case]
        try:
            step, last = makers[case]()
            for _ in range(warmup):
                step()
            float(last().flatten()[0])
            sync()
            cpu0 = time.process_time()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            float(last().flatten()[0])  # waits for the last update on any device
            sync()
            ms = (time.perf_counter() - t0) * 1000 / max(steps, 1)
            cpu_ms = (time.process_time() - cpu0) * 1000 / max(steps, 1)
            results[case] = {'msPerStep': ms, 'cpuMsPerStep': cpu_ms, 'steps': steps, 'warmup': warmup}
            log(f'torch {case}: {ms:.2f} ms/step ({steps} steps)')
        except Exception as e:  # one failing case must not lose the others
            results[case] = {'error': f'{type(e).__name__}: {e}'}
            log(f'torch {case}: failed: {e}')
    print(json.dumps({
        'torch': torch.__version__,
        'python': sys.version.split()[0],
        'device': str(dev) if dev.type != 'cuda' else f'cuda ({torch.cuda.get_device_name(dev)})',
        'threads': torch.get_num_threads(),
        'results': results,
    }))


if __name__ == '__main__':
    main()

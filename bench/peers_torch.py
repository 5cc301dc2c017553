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
import random
import sys
import time

CASES = ['iql-critic', 'srpo-behavior-2048', 'srpo-behavior-256', 'srpo-actor', 'dtql-step', 'edp-step', 'dql-step', 'matmul-1024']
# the diffusion-policy steps need the schedules' constants (bench/peers_plan.ts) in --tables
NEEDS_TABLES = ('edp-step', 'dql-step', 'dtql-step')


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
    p.add_argument('--tables', default=None, help='JSON of the diffusion constants (bench/peers_plan.ts peerTables), needed by ' + ', '.join(NEEDS_TABLES))
    p.add_argument('--check', action='store_true', help='instead of timing: one step of each case from a fresh initialisation, reporting its losses')
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

    # ---- the diffusion-policy steps (algorithms/dtql.ts, edp.ts, dql.ts at hopper-medium-v2 settings)
    tables = json.loads(args.tables) if args.tables else None

    def mish_mlp(widths, layer_norm=False):
        layers = []
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                if layer_norm:
                    layers.append(nn.LayerNorm(widths[i + 1]))
                layers.append(nn.Mish())
        return nn.Sequential(*layers).to(dev)

    class MishTwinQ(nn.Module):
        """Twin Q, each head concat(s, a) -> 3 x (Linear 256[, LayerNorm], Mish) -> 1."""

        def __init__(self, layer_norm=False):
            super().__init__()
            self.q1 = mish_mlp([obs_dim + act_dim, 256, 256, 256, 1], layer_norm)
            self.q2 = mish_mlp([obs_dim + act_dim, 256, 256, 256, 1], layer_norm)

        def forward(self, s, a):
            sa = torch.cat([s, a], dim=1)
            return self.q1(sa), self.q2(sa)

    def frozen_copy(net):
        import copy
        c = copy.deepcopy(net)
        c.requires_grad_(False)
        return c

    class TimeMLP(nn.Module):
        """Sinusoidal embedding (16) -> Linear 32 -> Mish -> Linear 16: Diffusion-QL's time_mlp, DTQL's embed."""

        def __init__(self, order, shift, dim=16):
            super().__init__()
            half = dim // 2
            self.order = order
            self.register_buffer('freqs', torch.exp(-torch.arange(half, dtype=torch.float32) * math.log(10000) / (half - shift)))
            self.fc1 = nn.Linear(dim, 2 * dim)
            self.fc2 = nn.Linear(2 * dim, dim)

        def forward(self, t):
            arg = t[:, None] * self.freqs[None, :]
            parts = [torch.sin(arg), torch.cos(arg)] if self.order == 'sin-cos' else [torch.cos(arg), torch.sin(arg)]
            return self.fc2(F.mish(self.fc1(torch.cat(parts, dim=-1))))

    class NoiseNet(nn.Module):
        """Diffusion-QL's MLP (variant dql: [x, t_emb, s]) and EDP's (variant edp: [s, x, t_emb]): 3 x (256, Mish) -> act."""

        def __init__(self, variant):
            super().__init__()
            self.variant = variant
            self.time_mlp = TimeMLP('sin-cos', 1) if variant == 'dql' else TimeMLP('cos-sin', 0)
            self.mid = mish_mlp([obs_dim + act_dim + 16, 256, 256, 256])
            self.mid.append(nn.Mish())
            self.final = nn.Linear(256, act_dim)

        def forward(self, x, t, s):
            te = self.time_mlp(t)
            h = torch.cat([x, te, s] if self.variant == 'dql' else [s, x, te], dim=1)
            return self.final(self.mid(h))

    class DTQLDenoiser(nn.Module):
        """DTQL's EDM network F: Linear(concat[x, s, t_emb]) -> 3 x (Linear 256, Mish) -> act."""

        def __init__(self):
            super().__init__()
            self.embed = TimeMLP('sin-cos', 1)
            self.first = nn.Linear(act_dim + obs_dim + 16, 256)
            self.rest = mish_mlp([256, 256, 256, 256])
            self.rest.append(nn.Mish())
            self.out = nn.Linear(256, act_dim)

        def forward(self, x, t, s):
            return self.out(self.rest(self.first(torch.cat([x, s, self.embed(t)], dim=1))))

    def clipped_step(opt, params, clip):
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    def twin_td_sum(q1, q2, target):
        # the sum of the two heads' MSEs (DTQL's, Diffusion-QL's and EDP's critic loss)
        return F.mse_loss(q1, target) + F.mse_loss(q2, target)

    def random_head_q_loss(q1, q2, same):
        # -mean Q_j / stopgrad(mean |Q_k|), head j drawn on the host per step (k = j for EDP, the other for Diffusion-QL)
        a, b = (q1, q2) if random.random() < 0.5 else (q2, q1)
        return -a.mean() / (a if same else b).abs().mean().detach()

    def dtql_step():
        edm = tables['edm']
        q = MishTwinQ(layer_norm=True)
        q_target = frozen_copy(q)
        v = mish_mlp([obs_dim, 256, 256, 256, 1])
        behavior = DTQLDenoiser().to(dev)
        actor = mlp([obs_dim, 256, 256, 256, 2 * act_dim])
        q_opt = torch.optim.Adam(q.parameters(), lr=3e-4)
        v_opt = torch.optim.Adam(v.parameters(), lr=3e-4)
        b_opt = torch.optim.Adam(behavior.parameters(), lr=1e-4)
        a_opt = torch.optim.Adam(actor.parameters(), lr=1e-4)
        expectile, discount, tau, alpha, sd = 0.7, 0.99, 0.005, 5.0, edm['sigmaData']

        def edm_loss(x0, s):
            # sigma from the truncated log-logistic, D = clip(c_skip x_t + c_out F(c_in x_t, ln(sigma)/4)), loss mean ((D - x0)/c_out)^2
            u = edm['cdfLo'] + torch.rand(x0.shape[0], 1, device=dev) * (edm['cdfHi'] - edm['cdfLo'])
            sigma = torch.exp(edm['loc'] + edm['scale'] * torch.log(u / (1 - u)))
            xt = x0 + sigma * torch.randn_like(x0)
            r = torch.sqrt(sigma * sigma + sd * sd)
            c_out = sigma * sd / r
            f = behavior(xt / r, torch.log(sigma[:, 0]) / 4, s)
            d = torch.clamp(sd * sd / (r * r) * xt + c_out * f, -1, 1)
            return (((d - x0) / c_out) ** 2).mean()

        def step():
            obs, act, rew, next_obs, not_done = sample(256)
            # critic: V to the online min Q by expectile, Q to r + discount V(s'), one backward, Polyak target
            with torch.no_grad():
                next_v = v(next_obs)
            q1, q2 = q(obs, act)
            u = torch.min(q1, q2).detach() - v(obs)
            v_loss = (torch.abs(expectile - (u < 0).float()) * u * u).mean()
            q_loss = twin_td_sum(q1, q2, rew + discount * not_done * next_v)
            v_opt.zero_grad(set_to_none=True)
            q_opt.zero_grad(set_to_none=True)
            (v_loss + q_loss).backward()
            v_opt.step()
            q_opt.step()
            polyak(q_target, q, tau)
            # behaviour model: EDM loss on the data actions
            bc_loss = edm_loss(act, obs)
            b_opt.zero_grad(set_to_none=True)
            bc_loss.backward()
            b_opt.step()
            # one-step actor: alpha L_TR(a) - mean min Q(s, a), behaviour network and Q frozen
            behavior.requires_grad_(False)
            q.requires_grad_(False)
            mu, log_std = actor(obs).split(act_dim, dim=1)
            a = torch.tanh(mu + torch.exp(log_std.clamp(-5, 2)) * torch.randn_like(mu))
            tr_loss = edm_loss(a, obs)
            q_pi = torch.min(*q(obs, a)).mean()
            loss = alpha * tr_loss - q_pi
            a_opt.zero_grad(set_to_none=True)
            loss.backward()
            a_opt.step()
            behavior.requires_grad_(True)
            q.requires_grad_(True)
            return {'criticLoss': v_loss + q_loss, 'bcLoss': bc_loss, 'actorLoss': loss}

        return step, lambda: next(actor.parameters())

    def ddpm_chain(net, s, tab):
        # ancestral sampling over all T steps, x0 estimate clipped to +-1 (Diffusion-QL's p_sample_loop)
        x = torch.randn(s.shape[0], act_dim, device=dev)
        for k in reversed(range(tab['T'])):
            eps = net(x, torch.full((s.shape[0],), float(k), device=dev), s)
            x0 = torch.clamp(x / tab['sqrtAlphaBar'][k] - tab['sqrtOneMinusAlphaBar'][k] / tab['sqrtAlphaBar'][k] * eps, -1, 1)
            x = tab['coef1'][k] * x0 + tab['coef2'][k] * x
            if k > 0:
                x = x + tab['std'][k] * torch.randn_like(x)
        return x

    def dpm_sample(net, s, plan):
        # DPM-Solver++ singlestep order 3, 15 evaluations (EDP's), as bench/peers_plan.ts lists its updates
        pts = {'x': torch.randn(s.shape[0], act_dim, device=dev)}
        d0 = None
        for u in plan:
            inp = pts[u['input']]
            eps = net(inp, torch.full((s.shape[0],), float(u['time']), device=dev), s)
            d = torch.clamp(u['pe'] * inp + u['qe'] * eps, -1, 1)
            out = u['cx'] * pts['x'] + u['cd'] * d
            if u['cHist'] != 0:
                out = out + u['cHist'] * d0
            if u['saveD0']:
                d0 = d
            pts[u['output']] = torch.clamp(out, -1, 1) if u['clipOut'] else out
        return pts['x']

    def discrete_noise(x0, T, sqrt_ab, sqrt_1mab):
        k = torch.randint(T, (x0.shape[0],), device=dev)
        sab = sqrt_ab[k][:, None]
        s1m = sqrt_1mab[k][:, None]
        z = torch.randn_like(x0)
        return sab * x0 + s1m * z, k.float(), z, sab, s1m

    def diffusion_policy_step(kind):
        # Diffusion-QL (T 5, chain backprop) and EDP-TD3 (T 100, action approximation): critic on targets from the
        # target policy, Polyak; policy step; both clipped to gradient norm 9 (hopper-medium-v2). The target policy's
        # update (every 5th step) is not part of the timed step, as on the engine side.
        tab = tables[kind]
        actor = NoiseNet(kind).to(dev)
        target = frozen_copy(actor)
        q = MishTwinQ()
        q_target = frozen_copy(q)
        a_opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
        q_opt = torch.optim.Adam(q.parameters(), lr=3e-4)
        discount, tau, clip = 0.99, 0.005, 9.0
        sqrt_ab = torch.tensor(tab['sqrtAlphaBar'], device=dev)
        sqrt_1mab = torch.tensor(tab['sqrtOneMinusAlphaBar'], device=dev)

        def step():
            obs, act, rew, next_obs, not_done = sample(256)
            with torch.no_grad():
                next_a = ddpm_chain(target, next_obs, tab) if kind == 'dql' else dpm_sample(target, next_obs, tab['dpm'])
                next_v = torch.min(*q_target(next_obs, next_a))
            q1, q2 = q(obs, act)
            q_loss = twin_td_sum(q1, q2, rew + discount * not_done * next_v)
            q_opt.zero_grad(set_to_none=True)
            q_loss.backward()
            clipped_step(q_opt, q.parameters(), clip)
            polyak(q_target, q, tau)
            xk, k, z, sab, s1m = discrete_noise(act, tab['T'], sqrt_ab, sqrt_1mab)
            eps = actor(xk, k, obs)
            diff = F.mse_loss(eps, z)
            q.requires_grad_(False)
            if kind == 'dql':
                a_new = ddpm_chain(actor, obs, tab)
                guide = random_head_q_loss(*q(obs, a_new), same=False)
            else:
                a0 = torch.clamp((xk - s1m * eps) / sab, -1, 1)
                guide = 2.0 * random_head_q_loss(*q(obs, a0), same=True)
            q.requires_grad_(True)
            loss = diff + guide
            a_opt.zero_grad(set_to_none=True)
            loss.backward()
            clipped_step(a_opt, actor.parameters(), clip)
            return {'qLoss': q_loss, 'actorLoss': loss, 'diffLoss': diff}

        return step, lambda: next(actor.parameters())

    # ---- --check: the networks of the diffusion-policy steps on the formula weights and inputs of bench/peers_plan.ts
    def formula_weights(module):
        with torch.no_grad():
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    o, n = m.weight.shape
                    j = torch.arange(o, dtype=torch.float64)[:, None]
                    i = torch.arange(n, dtype=torch.float64)[None, :]
                    m.weight.copy_(0.5 * torch.sin(0.37 * i + 0.71 * j + 0.013 * n + 0.029 * o) / math.sqrt(n))
                    m.bias.copy_(0.05 * torch.cos(0.91 * torch.arange(o, dtype=torch.float64) + 0.031 * o))
                elif isinstance(m, nn.LayerNorm):
                    jj = torch.arange(m.weight.shape[0], dtype=torch.float64)
                    m.weight.copy_(1 + 0.1 * torch.sin(0.5 * jj))
                    m.bias.copy_(0.05 * torch.cos(0.3 * jj))

    def forwards(case):
        rows = 8
        b = torch.arange(rows, dtype=torch.float64)[:, None]
        s = torch.sin(0.37 * b + 1.1 * torch.arange(obs_dim, dtype=torch.float64)[None, :] + 0.2).float().to(dev)
        a = (0.8 * torch.cos(0.53 * b + 0.9 * torch.arange(act_dim, dtype=torch.float64)[None, :])).float().to(dev)
        bi = list(range(rows))
        t = torch.tensor([k % 5 for k in bi] if case == 'dql-step' else [(13 * k) % 100 for k in bi] if case == 'edp-step' else [-1.5 + 0.3 * k for k in bi], dtype=torch.float32, device=dev)
        out = {}
        with torch.no_grad():
            if case == 'dtql-step':
                q, v, behavior = MishTwinQ(layer_norm=True), mish_mlp([obs_dim, 256, 256, 256, 1]), DTQLDenoiser().to(dev)
                actor = mlp([obs_dim, 256, 256, 256, 2 * act_dim])
                for m in (q, v, behavior, actor):
                    formula_weights(m)
                out['q1'], out['q2'] = q(s, a)
                out['v'], out['denoiser'], out['actor'] = v(s), behavior(a, t, s), actor(s)
            else:
                net = NoiseNet('dql' if case == 'dql-step' else 'edp').to(dev)
                formula_weights(net)
                out['eps'] = net(a, t, s)
                if case == 'edp-step':
                    q = MishTwinQ()
                    formula_weights(q)
                    out['q1'], out['q2'] = q(s, a)
        return {k: [float(x) for x in v.flatten().cpu()] for k, v in out.items()}

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
        'dtql-step': dtql_step,
        'edp-step': lambda: diffusion_policy_step('edp'),
        'dql-step': lambda: diffusion_policy_step('dql'),
        'matmul-1024': matmul,
    }
    results = {}
    for case in cases:
        warmup, steps = plan[case]
        try:
            if case in NEEDS_TABLES and tables is None:
                raise ValueError('needs --tables (bench/peers.ts passes them)')
            step, last = makers[case]()
            if args.check:
                # the networks on formula weights, and one step from a fresh initialisation (bench/peers.ts --check)
                out = step() or {}
                results[case] = {'losses': {k: float(v) for k, v in out.items()}, 'forwards': forwards(case)}
                log(f'torch {case}: ' + ', '.join(f'{k} {float(v):.4g}' for k, v in out.items()))
                continue
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
        'blas': loaded_blas(),
        'results': results,
    }))


def loaded_blas():
    """The BLAS library this process runs on (the one mapped into it), whatever torch was built against."""
    try:
        with open('/proc/self/maps') as f:
            libs = {line.split()[-1] for line in f if 'blas' in line.split()[-1]}
    except OSError:
        return 'unknown'
    return ', '.join(sorted(libs)) or 'none loaded'


if __name__ == '__main__':
    main()

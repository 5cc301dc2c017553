#!/usr/bin/env python3
"""Loads an export (scripts/export-torch.ts) of SRPO, DTQL or Diffusion-QL with strict=True into PyTorch modules
laid out as each paper's code lays them out, runs them on the inputs of a case file and compares their outputs
with the engine's outputs stored there.

    python3 scripts/torch_check.py srpo|dtql|dql EXPORT_DIR CASE.json

Prints one JSON line {"ok": bool, "max_abs": {...}, ...}; exit code 1 when an output differs beyond tolerance.
The module definitions are this project's restatement of the paper's architecture: widths come from the file.
"""
import json
import math
import struct
import sys

import torch
import torch.nn as nn


def read_safetensors(path):
    with open(path, 'rb') as f:
        blob = f.read()
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    meta = header.pop('__metadata__', {})
    tensors = {}
    for name, info in header.items():
        assert info['dtype'] == 'F32', f'{name}: {info["dtype"]}'
        lo, hi = info['data_offsets']
        data = bytearray(blob[8 + n + lo:8 + n + hi])
        tensors[name] = torch.frombuffer(data, dtype=torch.float32).reshape(info['shape']).clone()
    return tensors, meta


def sequential(widths, act, out_act=None):
    """Linear layers with `act` between them (entry 2i is Linear i), `out_act` after the last."""
    layers = []
    for i in range(len(widths) - 1):
        layers.append(nn.Linear(widths[i], widths[i + 1]))
        if i < len(widths) - 2:
            layers.append(act())
    if out_act is not None:
        layers.append(out_act())
    return nn.Sequential(*layers)


def widths_of(state, prefix):
    ws, i = [], 0
    while f'{prefix}.{2 * i}.weight' in state:
        w = state[f'{prefix}.{2 * i}.weight']
        if i == 0:
            ws.append(w.shape[1])
        ws.append(w.shape[0])
        i += 1
    return ws


class TwinQ(nn.Module):
    """Two heads on [action, state]."""

    def __init__(self, widths):
        super().__init__()
        self.q1 = sequential(widths, nn.ReLU)
        self.q2 = sequential(widths, nn.ReLU)

    def both(self, action, state):
        x = torch.cat([action, state], -1)
        return self.q1(x), self.q2(x)


class ValueFunction(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.v = sequential(widths, nn.ReLU)


class Critic(nn.Module):
    def __init__(self, q_widths, v_widths):
        super().__init__()
        self.q0 = TwinQ(q_widths)
        self.q0_target = TwinQ(q_widths)
        self.vf = ValueFunction(v_widths)


class DiracPolicy(nn.Module):
    def __init__(self, widths):
        super().__init__()
        self.net = sequential(widths, nn.ReLU, nn.Tanh)


class FourierFeatures(nn.Module):
    def __init__(self, half):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(half), requires_grad=False)

    def forward(self, t):
        proj = t[..., None] * self.W[None, :] * 2 * math.pi
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class Block(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.layer_norm = nn.LayerNorm(h)
        self.fc1 = nn.Linear(h, 4 * h)
        self.fc2 = nn.Linear(4 * h, h)
        self.residual = nn.Linear(h, h)  # unused when the widths match, as in the paper's code
        self.act = nn.Mish()

    def forward(self, x):
        return x + self.fc2(self.act(self.fc1(self.layer_norm(x))))


class ResNet(nn.Module):
    def __init__(self, blocks, in_dim, hidden, out_dim):
        super().__init__()
        self.fc = nn.Linear(in_dim, hidden)
        self.blocks = nn.ModuleList([Block(hidden) for _ in range(blocks)])
        self.out_fc = nn.Linear(hidden, out_dim)
        self.act = nn.Mish()

    def forward(self, x):
        x = self.fc(x)
        for b in self.blocks:
            x = b(x)
        return self.out_fc(self.act(x))


class ScoreNet(nn.Module):
    def __init__(self, state):
        super().__init__()
        half = state['embed.0.W'].shape[0]
        embed_dim = state['cond_model.0.weight'].shape[1]
        cond = state['cond_model.2.weight'].shape[0]
        hidden, in_dim = state['main.fc.weight'].shape
        out_dim = state['main.out_fc.weight'].shape[0]
        blocks = len({k.split('.')[2] for k in state if k.startswith('main.blocks.')})
        assert 2 * half == embed_dim
        self.embed = nn.Sequential(FourierFeatures(half))
        self.cond_model = sequential([embed_dim, cond, cond], nn.Mish)
        self.main = ResNet(blocks, in_dim, hidden, out_dim)

    def forward(self, x, t, s):
        return self.main(torch.cat([x, s, self.cond_model(self.embed(t))], dim=-1))


class SinusoidalPosEmb(nn.Module):
    """sin then cos of t * exp(-i log(10000) / (half - 1)), i < half."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, t):
        half = self.dim // 2
        freqs = torch.exp(torch.arange(half, dtype=torch.float32) * -(math.log(10000) / (half - 1)))
        arg = t[:, None] * freqs[None, :]
        return torch.cat([arg.sin(), arg.cos()], dim=-1)


def time_mlp(dim):
    return nn.Sequential(SinusoidalPosEmb(dim), nn.Linear(dim, 2 * dim), nn.Mish(), nn.Linear(2 * dim, dim))


class DqlNoiseNet(nn.Module):
    """Diffusion-QL's MLP: x, time embedding, state joined; three Linear + Mish; a final Linear."""

    def __init__(self, state):
        super().__init__()
        t_dim = state['time_mlp.1.weight'].shape[1]
        self.time_mlp = time_mlp(t_dim)
        self.mid_layer = sequential(widths_of(state, 'mid_layer'), nn.Mish, nn.Mish)
        hidden = state['final_layer.weight'].shape[1]
        self.final_layer = nn.Linear(hidden, state['final_layer.weight'].shape[0])

    def forward(self, x, t, s):
        return self.final_layer(self.mid_layer(torch.cat([x, self.time_mlp(t), s], dim=1)))


class Heads(nn.Module):
    """Diffusion-QL's and DTQL's critic: q1_model and q2_model on [state, action] (DTQL's with LayerNorm, and v_model)."""

    def __init__(self, state, layer_norm):
        super().__init__()
        self.q1_model = layered(state, 'q1_model', layer_norm)
        self.q2_model = layered(state, 'q2_model', layer_norm)
        if 'v_model.0.weight' in state:
            self.v_model = sequential(widths_of(state, 'v_model'), nn.Mish)

    def both(self, state, action):
        x = torch.cat([state, action], dim=-1)
        return self.q1_model(x), self.q2_model(x)


def layered(state, prefix, layer_norm):
    if not layer_norm:
        return sequential(widths_of(state, prefix), nn.Mish)
    ws, i = [], 0
    while f'{prefix}.{3 * i}.weight' in state:
        w = state[f'{prefix}.{3 * i}.weight']
        ws += [w.shape[1]] if i == 0 else []
        ws.append(w.shape[0])
        i += 1
    layers = []
    for k in range(len(ws) - 1):
        layers.append(nn.Linear(ws[k], ws[k + 1]))
        if k < len(ws) - 2:
            layers += [nn.LayerNorm(ws[k + 1]), nn.Mish()]
    return nn.Sequential(*layers)


class DtqlScoreNet(nn.Module):
    """DTQL's ScoreNetwork: a time embedding, then layers.layers: Linear, (Linear, Mish) per further hidden layer, Linear."""

    def __init__(self, state):
        super().__init__()
        dim = state['embed.1.weight'].shape[1]
        self.embed = time_mlp(dim)
        idx = sorted({int(k.split('.')[2]) for k in state if k.startswith('layers.layers.')})
        mods = []
        for i in range(max(idx) + 1):
            if i in idx:
                w = state[f'layers.layers.{i}.weight']
                mods.append(nn.Linear(w.shape[1], w.shape[0]))
            else:
                mods.append(nn.Mish())
        self.layers = nn.Module()
        self.layers.layers = nn.ModuleList(mods)

    def forward(self, x, t, s):
        h = torch.cat([x, s, self.embed(t)], dim=-1)
        for m in self.layers.layers:
            h = m(h)
        return h


def load(module, state):
    module.load_state_dict(state, strict=True)
    module.eval()
    return module


def run_srpo(d, inp):
    behavior_sd, _ = read_safetensors(f'{d}/behavior.safetensors')
    critic_sd, meta = read_safetensors(f'{d}/critic.safetensors')
    actor_sd, _ = read_safetensors(f'{d}/actor.safetensors')
    assert meta.get('input_order') == 'action,state'
    behavior = load(ScoreNet(behavior_sd), behavior_sd)
    critic = load(Critic(widths_of(critic_sd, 'q0.q1'), widths_of(critic_sd, 'vf.v')), critic_sd)
    actor = load(DiracPolicy(widths_of(actor_sd, 'net')), actor_sd)
    q1, q2 = critic.q0.both(inp['act'], inp['obs'])
    q1t, q2t = critic.q0_target.both(inp['act'], inp['obs'])
    return {'eps': behavior(inp['x'], inp['t'], inp['obs']), 'q1': q1, 'q2': q2, 'q1_target': q1t, 'q2_target': q2t,
            'v': critic.vf.v(inp['obs']), 'actor': actor.net(inp['obs'])}


def run_dtql(d, inp):
    behavior_sd, _ = read_safetensors(f'{d}/behavior.safetensors')
    critic_sd, _ = read_safetensors(f'{d}/critic.safetensors')
    target_sd, _ = read_safetensors(f'{d}/critic_target.safetensors')
    actor_sd, _ = read_safetensors(f'{d}/actor.safetensors')
    behavior = load(DtqlScoreNet(behavior_sd), behavior_sd)
    critic = load(Heads(critic_sd, True), critic_sd)
    target = load(Heads(target_sd, True), target_sd)
    net = sequential(widths_of(actor_sd, 'net'), nn.ReLU)
    holder = nn.Module()
    holder.net = net
    load(holder, actor_sd)
    q1, q2 = critic.both(inp['obs'], inp['act'])
    q1t, q2t = target.both(inp['obs'], inp['act'])
    return {'eps': behavior(inp['x'], inp['t'], inp['obs']), 'q1': q1, 'q2': q2, 'q1_target': q1t, 'q2_target': q2t,
            'v': critic.v_model(inp['obs']), 'actor': holder.net(inp['obs'])}


def run_dql(d, inp):
    actor_sd, _ = read_safetensors(f'{d}/actor.safetensors')
    critic_sd, _ = read_safetensors(f'{d}/critic.safetensors')
    actor = load(DqlNoiseNet(actor_sd), actor_sd)
    critic = load(Heads(critic_sd, False), critic_sd)
    q1, q2 = critic.both(inp['obs'], inp['act'])
    return {'eps': actor(inp['x'], inp['t'], inp['obs']), 'q1': q1, 'q2': q2}


def main():
    method, export_dir, case_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(case_path) as f:
        case = json.load(f)
    inp = {k: torch.tensor(v, dtype=torch.float32) for k, v in case['inputs'].items()}
    with torch.no_grad():
        got = {'srpo': run_srpo, 'dtql': run_dtql, 'dql': run_dql}[method](export_dir, inp)
    max_abs, ok = {}, True
    for k, v in got.items():
        want = torch.tensor(case['outputs'][k], dtype=torch.float32).reshape(v.shape)
        err = (v - want).abs().max().item()
        max_abs[k] = err
        ok = ok and err <= 1e-4 * max(1.0, want.abs().max().item())
    print(json.dumps({'ok': ok, 'max_abs': max_abs, 'torch': torch.__version__}))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()

#!/usr/bin/env python3
"""Loads an SRPO export (scripts/export-torch.ts) with strict=True into PyTorch modules laid out as the paper's
code lays them out (ScoreNet_IDQL; a critic holding q0, q0_target and vf; Dirac_Policy), runs them on the inputs
of a case file and compares their outputs with the engine's outputs stored there.

    python3 scripts/torch_check_srpo.py EXPORT_DIR CASE.json

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


def main():
    export_dir, case_path = sys.argv[1], sys.argv[2]
    with open(case_path) as f:
        case = json.load(f)
    tensor = lambda k: torch.tensor(case['inputs'][k], dtype=torch.float32)
    obs, act, x, t = tensor('obs'), tensor('act'), tensor('x'), tensor('t')

    behavior_sd, _ = read_safetensors(f'{export_dir}/behavior.safetensors')
    critic_sd, critic_meta = read_safetensors(f'{export_dir}/critic.safetensors')
    actor_sd, _ = read_safetensors(f'{export_dir}/actor.safetensors')
    assert critic_meta.get('input_order') == 'action,state'

    behavior = ScoreNet(behavior_sd)
    behavior.load_state_dict(behavior_sd, strict=True)
    critic = Critic(widths_of(critic_sd, 'q0.q1'), widths_of(critic_sd, 'vf.v'))
    critic.load_state_dict(critic_sd, strict=True)
    actor = DiracPolicy(widths_of(actor_sd, 'net'))
    actor.load_state_dict(actor_sd, strict=True)
    for m in (behavior, critic, actor):
        m.eval()

    with torch.no_grad():
        q1, q2 = critic.q0.both(act, obs)
        q1t, q2t = critic.q0_target.both(act, obs)
        got = {
            'eps': behavior(x, t, obs), 'q1': q1, 'q2': q2, 'q1_target': q1t, 'q2_target': q2t,
            'v': critic.vf.v(obs), 'actor': actor.net(obs),
        }
    max_abs, ok = {}, True
    for k, v in got.items():
        want = torch.tensor(case['outputs'][k], dtype=torch.float32).reshape(v.shape)
        err = (v - want).abs().max().item()
        scale = max(1.0, want.abs().max().item())
        max_abs[k] = err
        ok = ok and err <= 1e-4 * scale
    print(json.dumps({'ok': ok, 'max_abs': max_abs, 'torch': torch.__version__}))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()

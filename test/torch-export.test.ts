// SRPO's, DTQL's and Diffusion-QL's networks exported in the layout of their papers' PyTorch code: the files load
// there with strict=True and every network computes what the engine computes (checked in PyTorch when the system
// python3 has torch: .ci/run installs Debian's python3-torch); SRPO's critic inputs are reordered to
// [action, state], and the metadata says how observations and actions must be transformed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu, rng } from './helpers.ts';
import { noGrad } from '../engine/autograd.ts';
import type { Module } from '../engine/nn.ts';
import { decodeSafetensors } from '../engine/safetensors.ts';
import { tensor, tidy, type Tensor } from '../engine/tensor.ts';
import { loadCheckpoint } from '../algorithms/common/run-files.ts';
import { runOffline, type OfflineConfig, type OfflineMethod } from '../algorithms/common/offline-method.ts';
import type { TwinQCritic } from '../algorithms/common/twin-q-critic.ts';
import type { IQLCritic } from '../algorithms/common/iql.ts';
import { SRPO, type SrpoModels } from '../algorithms/srpo.ts';
import { DTQL, type DtqlModels } from '../algorithms/dtql.ts';
import { DQL, type DqlModels } from '../algorithms/dql.ts';
import { taskConfig as srpoTask } from '../algorithms/srpo/presets.ts';
import { taskConfig as dtqlTask } from '../algorithms/dtql/presets.ts';
import { taskConfig as dqlTask } from '../algorithms/dql/presets.ts';

const t = suite('torch-export');
let scratch = '';
const tiny = { bcEval: false, evalEpisodes: 1, evalEvery: 0, logEvery: 5, checkpointEvery: 5 };

/** Each method: its tiny run, and the engine's outputs on the check's inputs (time t per row, x an action). */
const CASES = {
  srpo: {
    method: SRPO as unknown as OfflineMethod<OfflineConfig, unknown>,
    cfg: {
      ...srpoTask('pendulum-quick'), ...tiny, behaviorHidden: 16, behaviorBlocks: 2, behaviorSteps: 5, behaviorBatch: 32, behaviorEmbedDim: 8,
      behaviorCondDim: 12, criticHidden: [16, 16], criticSteps: 5, criticBatch: 32, actorHidden: 16, actorSteps: 5, actorBatch: 32,
    },
    outputs(m: unknown, obs: Tensor, act: Tensor, x: Tensor, time: Tensor): Record<string, Tensor> {
      const s = m as SrpoModels;
      s.behavior.net.eval();
      const [q1, q2] = s.critic.q.forward(obs, act);
      const [q1t, q2t] = s.critic.qTarget.forward(obs, act);
      return { eps: s.behavior.net.forward(x, time, obs), q1, q2, q1_target: q1t, q2_target: q2t, v: s.critic.v.forward(obs), actor: s.actor.forward(obs) };
    },
  },
  dtql: {
    method: DTQL as unknown as OfflineMethod<OfflineConfig, unknown>,
    cfg: { ...dtqlTask('pendulum-quick'), ...tiny, behaviorHidden: 16, criticHidden: [16, 16], actorHidden: 16, actorLayers: 2, pretrainSteps: 5, trainSteps: 5, batch: 32 },
    outputs(m: unknown, obs: Tensor, act: Tensor, x: Tensor, time: Tensor): Record<string, Tensor> {
      const d = m as DtqlModels;
      const critic = d.critic as IQLCritic;
      const [q1, q2] = critic.q.forward(obs, act);
      const [q1t, q2t] = critic.qTarget.forward(obs, act);
      return { eps: d.behavior.net.forward(x, time, obs), q1, q2, q1_target: q1t, q2_target: q2t, v: critic.v.forward(obs), actor: d.actor.net.forward(obs) };
    },
  },
  dql: {
    method: DQL as unknown as OfflineMethod<OfflineConfig, unknown>,
    cfg: { ...dqlTask('pendulum-quick'), ...tiny, actorHidden: 16, criticHidden: [16, 16, 16], trainSteps: 5, batch: 32 },
    outputs(m: unknown, obs: Tensor, act: Tensor, x: Tensor, time: Tensor): Record<string, Tensor> {
      const q = m as DqlModels;
      const [q1, q2] = (q.critic as TwinQCritic).q.forward(obs, act);
      return { eps: q.actor.model.net.forward(x, time, obs), q1, q2 };
    },
  },
};

t.before(async () => {
  await gpu();
  scratch = mkdtempSync(join(tmpdir(), 'wd-torch-export-'));
  for (const [name, c] of Object.entries(CASES)) {
    const dir = join(scratch, name);
    await runOffline(c.method, c.cfg as OfflineConfig, { dir, quiet: true, stream: { write: () => true } });
    writeFileSync(join(dir, 'config.json'), JSON.stringify(c.cfg));
    const r = spawnSync(process.execPath, ['scripts/export-torch.ts', '--run', dir], { encoding: 'utf8' });
    assert.is(r.status, 0, r.stderr);
  }
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

const exported = (method: string, name: string) => decodeSafetensors(readFileSync(join(scratch, method, 'torch', `${name}.safetensors`)));

t("the files hold the papers' names; SRPO's critic takes [action, state]; the metadata states the transforms", async () => {
  const critic = exported('srpo', 'critic');
  assert.equal(
    [...critic.tensors.keys()].filter((k) => k.startsWith('q0.q1.')),
    ['q0.q1.0.weight', 'q0.q1.0.bias', 'q0.q1.2.weight', 'q0.q1.2.bias', 'q0.q1.4.weight', 'q0.q1.4.bias'],
  );
  for (const prefix of ['q0.q2.', 'q0_target.q1.', 'q0_target.q2.', 'vf.v.']) assert.ok([...critic.tensors.keys()].some((k) => k.startsWith(prefix)), prefix);
  assert.ok(exported('srpo', 'behavior').tensors.has('main.blocks.1.residual.weight'));
  assert.equal([...exported('srpo', 'actor').tensors.keys()], ['net.0.weight', 'net.0.bias', 'net.2.weight', 'net.2.bias', 'net.4.weight', 'net.4.bias']);
  assert.ok(exported('dtql', 'critic').tensors.has('q1_model.1.weight'), "DTQL's LayerNorm after the first Linear");
  assert.ok(exported('dtql', 'critic').tensors.has('v_model.4.weight'), "DTQL's v_model: Linear, Mish, Linear, Mish, Linear");
  assert.ok(exported('dql', 'critic').tensors.has('q2_model.6.bias'));

  const m = SRPO.build(3, 1, CASES.srpo.cfg);
  loadCheckpoint(join(scratch, 'srpo', 'critic.safetensors'), { modules: m.critic.modules() });
  const ours = (await m.critic.q.q1.parameters()[0]!.read()) as Float32Array;
  const theirs = critic.tensors.get('q0.q1.0.weight')!.data as Float32Array;
  for (let r = 0; r < 16; r++) {
    assert.is(theirs[r * 4], ours[r * 4 + 3], `row ${r}: the action column comes first`);
    assert.equal([...theirs.subarray(r * 4 + 1, r * 4 + 4)], [...ours.subarray(r * 4, r * 4 + 3)], `row ${r}: then the state`);
  }
  const stats = JSON.parse(readFileSync(join(scratch, 'srpo', 'obs_stats.json'), 'utf8')) as unknown;
  assert.equal(JSON.parse(critic.metadata['obs_normalization']!), stats);
  assert.equal(JSON.parse(critic.metadata['action_box']!), { low: [-2], high: [2] });
  SRPO.dispose(m);
});

const hasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

for (const [name, c] of Object.entries(CASES)) {
  (hasTorch ? t : t.skip)(`${name}: PyTorch loads the files with strict=True and every network computes what the engine computes`, async () => {
    const dir = join(scratch, name);
    const m = c.method.build(3, 1, c.cfg as OfflineConfig);
    for (const phase of c.method.phases) {
      const run = phase.make(m, c.cfg as OfflineConfig, null as never, join(dir, `${phase.name}.safetensors`));
      loadCheckpoint(run.checkpoint, { modules: run.parts.modules as Record<string, Module> });
      run.finish?.();
    }
    const r = rng(5);
    const n = 7;
    const inputs = {
      obs: Array.from({ length: n }, () => [r() * 2 - 1, r() * 2 - 1, r() * 8 - 4]),
      act: Array.from({ length: n }, () => [r() * 2 - 1]),
      x: Array.from({ length: n }, () => [r() * 2 - 1]),
      t: Array.from({ length: n }, () => 0.02 + 0.96 * r()),
    };
    const outs = tidy(() =>
      noGrad(() => c.outputs(m, tensor(inputs.obs.flat(), [n, 3]), tensor(inputs.act.flat(), [n, 1]), tensor(inputs.x.flat(), [n, 1]), tensor(inputs.t, [n]))),
    );
    const outputs = Object.fromEntries(await Promise.all(Object.entries(outs).map(async ([k, v]) => [k, Array.from(await v.read())] as const)));
    const casePath = join(scratch, `${name}-case.json`);
    writeFileSync(casePath, JSON.stringify({ inputs, outputs }));
    const check = spawnSync('/usr/bin/python3', ['scripts/torch_check.py', name, join(dir, 'torch'), casePath], { encoding: 'utf8' });
    assert.is(check.status, 0, `${check.stdout}\n${check.stderr}`);
    const result = JSON.parse(check.stdout) as { ok: boolean; max_abs: Record<string, number> };
    assert.ok(result.ok, check.stdout);
    console.log(`  ${name} in PyTorch: largest difference ${Math.max(...Object.values(result.max_abs)).toExponential(2)} (${Object.keys(result.max_abs).join(', ')})`);
    for (const v of Object.values(outs)) v.dispose();
    c.method.dispose(m);
  });
}

t.run();

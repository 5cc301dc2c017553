// SRPO's networks exported in the layout of the paper's PyTorch code: the files load there with strict=True and
// every network computes what the engine computes (checked in PyTorch when the system python3 has torch: .ci/run
// installs Debian's python3-torch); the critic's inputs are reordered to [action, state], and the metadata says
// how observations and actions must be transformed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu, rng } from './helpers.ts';
import { noGrad } from '../engine/autograd.ts';
import { decodeSafetensors } from '../engine/safetensors.ts';
import { tensor, tidy } from '../engine/tensor.ts';
import { loadCheckpoint } from '../algorithms/common/run-files.ts';
import { runOffline } from '../algorithms/common/offline-method.ts';
import { SRPO } from '../algorithms/srpo.ts';
import { taskConfig, type SrpoConfig } from '../algorithms/srpo/presets.ts';

const t = suite('torch-export');
let scratch = '';
let runDir = '';
const cfg: SrpoConfig = {
  ...taskConfig('pendulum-quick'),
  behaviorHidden: 16, behaviorBlocks: 2, behaviorSteps: 5, behaviorBatch: 32, behaviorEmbedDim: 8, behaviorCondDim: 12,
  criticHidden: [16, 16], criticSteps: 5, criticBatch: 32, actorHidden: 16, actorSteps: 5, actorBatch: 32,
  bcEval: false, evalEpisodes: 1, evalEvery: 0, logEvery: 5, checkpointEvery: 5,
};

t.before(async () => {
  await gpu();
  scratch = mkdtempSync(join(tmpdir(), 'wd-torch-export-'));
  runDir = join(scratch, 'run');
  await runOffline(SRPO, cfg, { dir: runDir, quiet: true, stream: { write: () => true } });
  writeFileSync(join(runDir, 'config.json'), JSON.stringify(cfg));
  const r = spawnSync(process.execPath, ['scripts/export-torch.ts', '--run', runDir], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
});
t.after(() => rmSync(scratch, { recursive: true, force: true }));

function exported(name: string) {
  return decodeSafetensors(readFileSync(join(runDir, 'torch', `${name}.safetensors`)));
}

t("the files hold the paper's names; the critic's first layer takes [action, state]; the metadata states the transforms", async () => {
  const critic = exported('critic');
  assert.equal(
    [...critic.tensors.keys()].filter((k) => k.startsWith('q0.q1.')),
    ['q0.q1.0.weight', 'q0.q1.0.bias', 'q0.q1.2.weight', 'q0.q1.2.bias', 'q0.q1.4.weight', 'q0.q1.4.bias'],
  );
  for (const prefix of ['q0.q2.', 'q0_target.q1.', 'q0_target.q2.', 'vf.v.']) assert.ok([...critic.tensors.keys()].some((k) => k.startsWith(prefix)), prefix);
  assert.ok(exported('behavior').tensors.has('main.blocks.1.residual.weight'));
  assert.equal([...exported('actor').tensors.keys()], ['net.0.weight', 'net.0.bias', 'net.2.weight', 'net.2.bias', 'net.4.weight', 'net.4.bias']);

  const m = SRPO.build(3, 1, cfg);
  loadCheckpoint(join(runDir, 'critic.safetensors'), { modules: m.critic.modules() });
  const ours = (await m.critic.q.q1.parameters()[0]!.read()) as Float32Array;
  const theirs = critic.tensors.get('q0.q1.0.weight')!.data as Float32Array;
  for (let r = 0; r < 16; r++) {
    assert.is(theirs[r * 4], ours[r * 4 + 3], `row ${r}: the action column comes first`);
    assert.equal([...theirs.subarray(r * 4 + 1, r * 4 + 4)], [...ours.subarray(r * 4, r * 4 + 3)], `row ${r}: then the state`);
  }
  const stats = JSON.parse(readFileSync(join(runDir, 'obs_stats.json'), 'utf8')) as unknown;
  assert.equal(JSON.parse(critic.metadata['obs_normalization']!), stats);
  assert.equal(JSON.parse(critic.metadata['action_box']!), { low: [-2], high: [2] });
  SRPO.dispose(m);
});

const hasTorch = spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;

(hasTorch ? t : t.skip)('PyTorch loads the files with strict=True and every network computes what the engine computes', async () => {
  const m = SRPO.build(3, 1, cfg);
  loadCheckpoint(join(runDir, 'behavior.safetensors'), { modules: { behavior: m.behavior.net } });
  loadCheckpoint(join(runDir, 'critic.safetensors'), { modules: m.critic.modules() });
  loadCheckpoint(join(runDir, 'actor.safetensors'), { modules: { actor: m.actor } });
  m.behavior.net.eval();
  const r = rng(5);
  const n = 7;
  const inputs = {
    obs: Array.from({ length: n }, () => [r() * 2 - 1, r() * 2 - 1, r() * 8 - 4]),
    act: Array.from({ length: n }, () => [r() * 2 - 1]),
    x: Array.from({ length: n }, () => [r() * 2 - 1]),
    t: Array.from({ length: n }, () => 0.02 + 0.96 * r()),
  };
  const obs = tensor(inputs.obs.flat(), [n, 3]);
  const act = tensor(inputs.act.flat(), [n, 1]);
  const outs = tidy(() =>
    noGrad(() => {
      const [q1, q2] = m.critic.q.forward(obs, act);
      const [q1t, q2t] = m.critic.qTarget.forward(obs, act);
      return {
        eps: m.behavior.net.forward(tensor(inputs.x.flat(), [n, 1]), tensor(inputs.t, [n]), obs),
        q1, q2, q1_target: q1t, q2_target: q2t, v: m.critic.v.forward(obs), actor: m.actor.forward(obs),
      };
    }),
  );
  const outputs = Object.fromEntries(await Promise.all(Object.entries(outs).map(async ([k, v]) => [k, Array.from(await v.read())] as const)));
  const casePath = join(scratch, 'case.json');
  writeFileSync(casePath, JSON.stringify({ inputs, outputs }));
  const check = spawnSync('/usr/bin/python3', ['scripts/torch_check_srpo.py', join(runDir, 'torch'), casePath], { encoding: 'utf8' });
  assert.is(check.status, 0, `${check.stdout}\n${check.stderr}`);
  const result = JSON.parse(check.stdout) as { ok: boolean; max_abs: Record<string, number> };
  assert.ok(result.ok, check.stdout);
  console.log(`  PyTorch ${JSON.stringify(result)}`);
  for (const v of Object.values(outs)) v.dispose();
  obs.dispose();
  act.dispose();
  SRPO.dispose(m);
});

t.run();

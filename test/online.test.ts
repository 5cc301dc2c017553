// The online training loop on Pendulum (and Hopper for terminations) with a tiny agent: warm-up and update
// counts, transitions as stored (box mapping, dones without timeouts, final observations), hooks, checkpoint
// and resume, and recorded updates equal to eager ones.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { backward, detach, noGrad } from '../engine/autograd.ts';
import { HostRng } from '../engine/host-rng.ts';
import { Linear } from '../engine/nn.ts';
import { mean } from '../engine/ops/reduce.ts';
import { scale, square, sub, tanh } from '../engine/ops/elementwise.ts';
import { AdamW } from '../engine/optim.ts';
import { Generator } from '../engine/random.ts';
import { decodeSafetensors } from '../engine/safetensors.ts';
import type { Tensor } from '../engine/tensor.ts';
import type { ReplayStore } from '../datasets/replay.ts';
import { PendulumEnv } from '../envs/pendulum.ts';
import type { RunContext } from '../algorithms/common/phase.ts';
import type { CheckpointParts } from '../algorithms/common/run-files.ts';
import { PhaseInterrupted } from '../algorithms/common/phase.ts';
import { onlineCurvesSvg } from '../algorithms/common/curves.ts';
import { toEnvActions, trainOnline, updatesDue, type CollectedTransitions, type OnlineAgent, type OnlineConfig } from '../algorithms/common/online-loop.ts';
import { gpu } from './helpers.ts';

const t = suite('online');
t.before(gpu);
const scratch = mkdtempSync(join(tmpdir(), 'online-test-'));
t.after(() => rmSync(scratch, { recursive: true, force: true }));

/** A linear policy trained by regression on the stored actions; variant 1 also shrinks its weights a little. */
class TinyAgent implements OnlineAgent {
  readonly obsDim: number;
  readonly actDim: number;
  readonly actor: Linear;
  readonly opt: AdamW;
  readonly gen: Generator;
  readonly parts: CheckpointParts;
  actCalls = { explore: 0, eval: 0 };
  constructor(obsDim: number, actDim: number, seed = 0) {
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.actor = new Linear(obsDim, actDim, { rng: new HostRng(seed) });
    this.opt = new AdamW(this.actor.paramGroup(), { lr: 1e-2 });
    this.gen = new Generator(seed + 1);
    this.parts = { modules: { actor: this.actor }, optimizers: { actor: this.opt }, generators: { gen: this.gen } };
  }
  act(obs: Tensor, explore: boolean): Tensor {
    if (explore) this.actCalls.explore++;
    else this.actCalls.eval++;
    // outside [-1, 1] on purpose: the loop clips
    return noGrad(() => scale(tanh(this.actor.forward(obs)), explore ? 3 : 1));
  }
  update(store: ReplayStore, variant: number): Record<string, Tensor> {
    const b = store.sample(8, this.gen);
    const loss = mean(square(sub(this.actor.forward(b.obs), b.actions)));
    this.opt.group.zeroGrad();
    backward(loss);
    this.opt.step();
    return variant === 1 ? { loss: detach(loss), other: mean(b.rewards) } : { loss: detach(loss), other: mean(b.notDone) };
  }
  updateVariant(u: number): number {
    return u % 3 === 2 ? 1 : 0;
  }
  dispose(): void {
    this.opt.dispose();
  }
}

function config(over: Partial<OnlineConfig>): OnlineConfig {
  return {
    env: 'pendulum', seed: 3, numEnvs: 1, envSteps: 20, warmupSteps: 5, updatesPerStep: 1, replayCapacity: 1000,
    evalEvery: 0, evalEpisodes: 1, logEvery: 10, checkpointEvery: 1000, ...over,
  };
}

const silent = { write: () => true };
function context(over: Partial<RunContext> = {}): RunContext & { records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  return { cfg: { logEvery: 10, checkpointEvery: 1000 }, log: { write: (r) => records.push(r) }, stream: silent, quiet: true, records, ...over };
}

function concatRows(parts: CollectedTransitions[]): CollectedTransitions {
  type Column = Exclude<keyof CollectedTransitions, 'qpos' | 'qvel'>;
  const cat = <A extends Float32Array | Uint8Array | Uint16Array>(key: Column, make: (n: number) => A): A => {
    const arrays = parts.map((p) => p[key]);
    const out = make(arrays.reduce((s, a) => s + a.length, 0));
    let at = 0;
    for (const a of arrays) {
      out.set(a, at);
      at += a.length;
    }
    return out;
  };
  const f = (n: number) => new Float32Array(n);
  return {
    observations: cat('observations', f), actions: cat('actions', f), rewards: cat('rewards', f), nextObservations: cat('nextObservations', f),
    terminals: cat('terminals', (n) => new Uint8Array(n)), timeouts: cat('timeouts', (n) => new Uint8Array(n)), envIndex: cat('envIndex', (n) => new Uint16Array(n)),
  };
}

/** The replay rows a checkpoint holds, [rows][width]. */
function checkpointRows(path: string): Float32Array[] {
  const file = decodeSafetensors(readFileSync(path));
  const rows: Float32Array[] = [];
  for (let c = 0; ; c++) {
    const chunk = file.tensors.get(`replay.chunk${c}`);
    if (!chunk) break;
    const [n, w] = chunk.shape as [number, number];
    for (let i = 0; i < n; i++) rows.push((chunk.data as Float32Array).slice(i * w, (i + 1) * w));
  }
  return rows;
}

t('warm-up, update counts per variant, hooks in order, box mapping, stored rows', async () => {
  const cfg = config({ numEnvs: 3, envSteps: 31, warmupSteps: 10, updatesPerStep: 2, evalEvery: 15, evalEpisodes: 2, checkpointEvery: 1000 });
  const agent = new TinyAgent(3, 1);
  const seen: { t: CollectedTransitions; soFar: number }[] = [];
  const evals: number[] = [];
  const checkpoint = join(scratch, 'counts.safetensors');
  const ctx = context();
  const r = await trainOnline(agent, cfg, ctx, {
    checkpoint,
    hooks: { onTransitions: (tr, soFar) => seen.push({ t: tr, soFar }), onEvaluation: (e) => void evals.push(e.envSteps) },
  });
  assert.is(r.envSteps, 31);
  // (31 - 10) transitions after warm-up, 2 updates each
  assert.is(r.updates, 42);
  assert.is(updatesDue(cfg, 31), 42);
  assert.is(agent.opt.stepCount, 42, 'every update (eager, recorded, replayed) stepped the optimiser');
  // vector steps start at 0, 3, ..., 30: those from 12 on act with the agent (the step at 9 is still warm-up)
  assert.is(agent.actCalls.explore, 7);
  assert.equal(seen.map((s) => s.soFar), [3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31]);
  assert.equal(evals, [15, 30, 31]);
  assert.equal(r.evals.map((e) => e.envSteps), [15, 30, 31]);
  const all = concatRows(seen.map((s) => s.t));
  assert.is(all.rewards.length, 31);
  assert.equal([...all.envIndex.slice(0, 7)], [0, 1, 2, 0, 1, 2, 0]);
  assert.is(all.envIndex[30], 0, 'the last partial vector step stores its first copy only');
  assert.ok(all.actions.every((a) => a >= -2 && a <= 2), 'actions within the box');
  assert.ok(all.actions.slice(12).some((a) => Math.abs(a) === 2), 'agent actions beyond [-1, 1] clipped to the bound');
  // the store holds the [-1, 1] actions and everything else as collected
  const rows = checkpointRows(checkpoint);
  assert.is(rows.length, 31);
  for (let i = 0; i < 31; i++) {
    const row = rows[i]!;
    for (let c = 0; c < 3; c++) assert.is(row[c], all.observations[i * 3 + c]);
    assert.ok(Math.abs(row[3]! - all.actions[i]! / 2) < 1e-6, `row ${i}: unit action`);
    assert.is(row[4], all.rewards[i]);
    for (let c = 0; c < 3; c++) assert.is(row[5 + c], all.nextObservations[i * 3 + c]);
    assert.is(row[8], 1);
  }
  // losses of both variants reached the log
  const logged = ctx.records.filter((x) => x['loss'] !== undefined);
  assert.ok(logged.length >= 2 && logged.every((x) => Number.isFinite(x['loss'] as number) && Number.isFinite(x['other'] as number)));
  agent.dispose();
});

t('toEnvActions clips to [-1, 1] and maps linearly to the box', () => {
  const { unit, env } = toEnvActions(new Float32Array([-3, -1, 0, 0.5, 1, 7]), [-2, 0], [2, 10]);
  assert.equal([...unit], [-1, -1, 0, 0.5, 1, 1]);
  assert.equal([...env], [-2, 0, 0, 7.5, 2, 10]);
});

t('Pendulum timeouts are not dones and the last transition ends in the final observation', async () => {
  const cfg = config({ numEnvs: 1, envSteps: 205, warmupSteps: 205, seed: 11 });
  const agent = new TinyAgent(3, 1);
  const seen: CollectedTransitions[] = [];
  const checkpoint = join(scratch, 'timeout.safetensors');
  await trainOnline(agent, cfg, context(), { checkpoint, hooks: { onTransitions: (tr) => void seen.push(tr) } });
  const all = concatRows(seen);
  assert.is(all.timeouts.reduce((s, x) => s + x, 0), 1);
  assert.is(all.timeouts[199], 1);
  assert.is(all.terminals.reduce((s, x) => s + x, 0), 0);
  // the same episode stepped by hand with the recorded actions
  const env = new PendulumEnv({ seed: cfg.seed });
  let obs = env.reset(cfg.seed);
  for (let i = 0; i < 200; i++) {
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(all.observations[i * 3 + c]! - obs[c]!) < 1e-5, `obs ${i}`);
    obs = env.step([all.actions[i]!]).obs;
    for (let c = 0; c < 3; c++) assert.ok(Math.abs(all.nextObservations[i * 3 + c]! - obs[c]!) < 1e-5, `next obs ${i}`);
  }
  // after the timeout a new episode: its first observation is not the final one
  assert.ok([0, 1, 2].some((c) => all.observations[600 + c] !== all.nextObservations[597 + c]));
  const rows = checkpointRows(checkpoint);
  assert.is(rows[199]![8], 1, 'a timeout keeps not-done = 1');
  agent.dispose();
});

t('Hopper terminations are dones, with the final observation as next observation', async () => {
  const cfg = config({ env: 'hopper', numEnvs: 2, envSteps: 80, warmupSteps: 80, seed: 2 });
  const agent = new TinyAgent(11, 3);
  const seen: CollectedTransitions[] = [];
  const checkpoint = join(scratch, 'hopper.safetensors');
  await trainOnline(agent, cfg, context(), { checkpoint, hooks: { onTransitions: (tr) => void seen.push(tr) } });
  const all = concatRows(seen);
  const rows = checkpointRows(checkpoint);
  const ends = [...all.terminals.keys()].filter((i) => all.terminals[i] === 1);
  assert.ok(ends.length >= 1, 'random actions topple the hopper within 40 steps');
  const width = 2 * 11 + 3 + 2;
  for (let i = 0; i < rows.length; i++) assert.is(rows[i]![width - 1], all.terminals[i] ? 0 : 1, `row ${i}: not-done`);
  assert.is(all.timeouts.reduce((s, x) => s + x, 0), 0);
  for (const i of ends) {
    const next = i + 2; // the same copy's next row
    if (next * 11 >= all.observations.length) continue;
    const same = [...Array(11).keys()].every((c) => all.nextObservations[i * 11 + c] === all.observations[next * 11 + c]);
    assert.not.ok(same, `row ${i}: the next observation is the final one, not the reset`);
    const z = all.nextObservations[i * 11]!;
    const angle = all.nextObservations[i * 11 + 1]!;
    assert.ok(z < 0.7 || Math.abs(angle) > 0.2 || all.nextObservations.slice(i * 11 + 1, i * 11 + 11).some((v) => Math.abs(v) >= 100), `row ${i}: the final observation is unhealthy`);
  }
  // within an episode the next observation is the following row's observation
  for (let i = 0; i + 2 < all.rewards.length; i++) {
    if (all.terminals[i]) continue;
    for (let c = 0; c < 11; c++) assert.is(all.nextObservations[i * 11 + c], all.observations[(i + 2) * 11 + c]);
  }
  agent.dispose();
});

t('an interrupted run resumes with its counters, replay rows and agent state', async () => {
  const cfg = config({ numEnvs: 2, envSteps: 40, warmupSteps: 6, updatesPerStep: 1, checkpointEvery: 1000 });
  const checkpoint = join(scratch, 'resume.safetensors');
  const first = new TinyAgent(3, 1);
  let collected = 0;
  const ctx = context({ stopRequested: () => collected >= 20 });
  try {
    await trainOnline(first, cfg, ctx, { checkpoint, hooks: { onTransitions: (_tr, soFar) => void (collected = soFar) } });
    assert.unreachable('stopped');
  } catch (err) {
    assert.instance(err, PhaseInterrupted);
  }
  const atStop = checkpointRows(checkpoint);
  assert.is(atStop.length, 20);
  const savedWeights = await first.actor.weight.read();
  assert.is(first.opt.stepCount, 14);

  const second = new TinyAgent(3, 1);
  const soFar: number[] = [];
  let weightsAtResume: Promise<Float32Array | Int32Array | Uint32Array> | null = null;
  const r = await trainOnline(second, cfg, context(), {
    checkpoint,
    resume: true,
    hooks: {
      onTransitions: (_tr, n) => {
        // queued before the resumed run's first update
        weightsAtResume ??= second.actor.weight.read();
        soFar.push(n);
      },
    },
  });
  assert.equal(await weightsAtResume!, savedWeights, 'the saved weights were loaded');
  assert.equal(soFar, [22, 24, 26, 28, 30, 32, 34, 36, 38, 40], 'continues at 20 env steps');
  assert.is(r.envSteps, 40);
  assert.is(r.startEnvSteps, 20);
  assert.is(r.startUpdates, 14);
  assert.is(r.updates, 34);
  assert.is(second.opt.stepCount, 34, 'the optimiser continued from its saved step count');
  const end = checkpointRows(checkpoint);
  assert.is(end.length, 40);
  for (let i = 0; i < 20; i++) assert.equal(end[i], atStop[i], `row ${i} kept`);
  const fresh = new TinyAgent(3, 1);
  assert.not.equal(await fresh.actor.weight.read(), savedWeights, 'training had changed the weights');
  fresh.dispose();
  // resuming a complete run does nothing
  const third = new TinyAgent(3, 1);
  const again = await trainOnline(third, cfg, context(), { checkpoint, resume: true });
  assert.is(again.envSteps, 40);
  assert.is(again.updates, 34);
  assert.is(third.opt.stepCount, 34);
  for (const a of [first, second, third]) a.dispose();
});

t('a full ring buffer is checkpointed with its write position and resumed', async () => {
  const cfg = config({ numEnvs: 2, envSteps: 40, warmupSteps: 40, replayCapacity: 16 });
  const checkpoint = join(scratch, 'ring.safetensors');
  const seen: CollectedTransitions[] = [];
  let collected = 0;
  const first = new TinyAgent(3, 1);
  await trainOnline(first, cfg, context({ stopRequested: () => collected >= 20 }), {
    checkpoint,
    hooks: { onTransitions: (tr, n) => { seen.push(tr); collected = n; } },
  }).catch((err: unknown) => assert.instance(err, PhaseInterrupted));
  const extra = JSON.parse(decodeSafetensors(readFileSync(checkpoint)).metadata['extra']!) as Record<string, number>;
  assert.equal([extra['replaySize'], extra['replayPosition'], extra['envSteps']], [16, 4, 20]);
  const all = concatRows(seen);
  const rows = checkpointRows(checkpoint);
  assert.is(rows.length, 16);
  // ring slot j holds transition j + 16 for j < 4 (overwritten) and transition j otherwise
  for (let j = 0; j < 16; j++) {
    const i = j < 4 ? j + 16 : j;
    assert.is(rows[j]![4], all.rewards[i], `slot ${j}`);
  }
  const second = new TinyAgent(3, 1);
  const r = await trainOnline(second, cfg, context(), { checkpoint, resume: true });
  assert.is(r.envSteps, 40);
  const end = JSON.parse(decodeSafetensors(readFileSync(checkpoint)).metadata['extra']!) as Record<string, number>;
  assert.equal([end['replaySize'], end['replayPosition']], [16, 8]);
  first.dispose();
  second.dispose();
});

t('stopWhen ends the run after the evaluation that meets it, as a complete run', async () => {
  const cfg = config({ numEnvs: 2, envSteps: 40, warmupSteps: 4, evalEvery: 10, evalEpisodes: 1 });
  const checkpoint = join(scratch, 'early.safetensors');
  const agent = new TinyAgent(3, 1);
  const r = await trainOnline(agent, cfg, context(), { checkpoint, stopWhen: (e) => e.envSteps >= 20 });
  assert.equal([r.envSteps, r.updates], [20, 16]);
  assert.equal(r.evals.map((e) => e.envSteps), [10, 20]);
  const extra = JSON.parse(decodeSafetensors(readFileSync(checkpoint)).metadata['extra']!) as Record<string, unknown>;
  assert.equal([extra['complete'], extra['envSteps']], [true, 20]);
  const again = await trainOnline(agent, cfg, context(), { checkpoint, resume: true });
  assert.is(again.envSteps, 20, 'resuming an early-stopped run does nothing');
  agent.dispose();
});

t('recorded and replayed updates give the parameters of eager updates, bitwise', async () => {
  const cfg = config({ numEnvs: 1, envSteps: 16, warmupSteps: 6, updatesPerStep: 1 });
  const run = async (eager: boolean) => {
    const agent = new TinyAgent(3, 1, 7);
    await trainOnline(agent, cfg, context({ eager }));
    const w = [await agent.actor.weight.read(), await agent.actor.bias!.read()];
    agent.dispose();
    return w;
  };
  const replayed = await run(false);
  const eager = await run(true);
  assert.equal(replayed, eager);
});

t('curves picture: learning curve, references and one chart per logged value', () => {
  const records = [
    { phase: 'sac', step: 100, qLoss: 1, alpha: 0.5, updates: 50, episodeReturn: -900 },
    { phase: 'sac', step: 200, qLoss: 0.5, alpha: 0.4, updates: 150 },
    { phase: 'sac', step: 200, eval: { mean: -400, std: 10 } },
  ];
  const svg = onlineCurvesSvg(records, { 'uniform random': -1200 }, { phase: 'sac', policy: 'SAC' });
  for (const s of ['SAC (evaluation)', 'training episodes', 'uniform random', '>qLoss<', '>alpha<']) assert.ok(svg.includes(s), s);
  assert.not.ok(svg.includes('>updates<'));
});

t.run();

// The D4RL dataset recipe on a tiny Pendulum run: a stub agent (one tanh layer, deterministic) trained by a
// scripted loop that follows the online contract (vector envs, host transitions through onTransitions,
// evaluations through onEvaluation with chosen returns), so the medium point is known in advance; and once
// through the real online loop. Checks: every file reads back identically through readD4RL and validates,
// medium-replay is the hook's transitions regrouped by episode (with the simulator state replayed), the medium
// and expert rows come from the right snapshots (also with --expert best and --medium-rule closest),
// medium-expert = medium + expert, the command line's help and errors; and the generated files read by h5py
// (scripts/h5py-dump.py; skipped with a note where python3 with h5py is missing) agree with the project's reader.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gpu } from './helpers.ts';
import { HostRng } from '../engine/host-rng.ts';
import { Linear } from '../engine/nn.ts';
import { decodeSafetensors } from '../engine/safetensors.ts';
import type { Tensor } from '../engine/tensor.ts';
import { noGrad } from '../engine/autograd.ts';
import { sum } from '../engine/ops/reduce.ts';
import { trainOnline, type OnlineAgent, type OnlineConfig, type OnlineHooks, type OnlineResult } from '../algorithms/common/online-loop.ts';
import type { RunContext } from '../algorithms/common/phase.ts';
import { makeVecEnv } from '../envs/registry.ts';
import { CONTENT_DIGEST_KEY, readD4RL, validateD4RL, type D4RLData } from '../datasets/d4rl.ts';
import { concatD4RL, formatSummaryTable, replayPhysics, runRecipe, RECIPE_CREATED_BY, type DatasetKind, type RecipeResult } from '../scripts/dataset-recipe.ts';
import { TransitionLog, episodeRows, type TransitionChunk } from '../datasets/transition-log.ts';

const t = suite('recipe');
t.before(gpu);

/** Deterministic: a = tanh(w . obs + b); the scripted loop moves b so every snapshot is recognisable. */
class StubAgent implements OnlineAgent {
  readonly obsDim = 3;
  readonly actDim = 1;
  readonly actor = new Linear(3, 1, { act: 'tanh', rng: new HostRng(7) });
  readonly critic = new Linear(4, 1, { rng: new HostRng(8) });
  readonly parts = { modules: { actor: this.actor, critic: this.critic } };
  act(obs: Tensor, _explore: boolean): Tensor {
    return this.actor.forward(obs);
  }
  update(): Record<string, Tensor> {
    return { weightSum: noGrad(() => sum(this.actor.weight)) };
  }
  dispose(): void {}
}

const biasAt = (envSteps: number) => envSteps / 1000;

/**
 * The online contract without learning: uniform random actions in vector envs, every step's transitions
 * handed to onTransitions (actions in env units, next observation = the final one at an episode end), the
 * actor's bias set to biasAt(envSteps) after each step, and evaluations every evalEvery steps reporting the
 * given returns in turn. `seen` receives an independent copy of every chunk.
 */
function scriptedLoop(evalReturns: number[], seen: TransitionChunk[]) {
  return async (agent: OnlineAgent, cfg: OnlineConfig, _ctx: RunContext, opts: { hooks?: OnlineHooks }): Promise<OnlineResult> => {
    const vec = await makeVecEnv(cfg.env, cfg.numEnvs, { seed: cfg.seed });
    const rng = new HostRng(cfg.seed);
    const { num, obsDim, actDim } = vec;
    const low = vec.envs[0]!.actionLow;
    const high = vec.envs[0]!.actionHigh;
    let obs = vec.reset(cfg.seed);
    let steps = 0;
    let k = 0;
    const evals: OnlineResult['evals'] = [];
    while (steps < cfg.envSteps) {
      const actions = new Float32Array(num * actDim);
      for (let i = 0; i < actions.length; i++) actions[i] = rng.uniform(low[i % actDim]!, high[i % actDim]!);
      const r = vec.step(actions);
      const next = new Float32Array(r.obs);
      r.finalObs.forEach((f, i) => { if (f) next.set(f, i * obsDim); });
      const chunk: TransitionChunk = {
        observations: obs, actions, rewards: Float32Array.from(r.rewards), nextObservations: next,
        terminals: Uint8Array.from(r.terminated), timeouts: Uint8Array.from(r.truncated, (v, i) => (v && !r.terminated[i] ? 1 : 0)),
        envIndex: Uint16Array.from({ length: num }, (_, i) => i),
      };
      seen.push(structuredClone(chunk));
      steps += num;
      opts.hooks?.onTransitions?.(chunk, steps);
      (agent.actor as Linear).bias!.set([biasAt(steps)]);
      if (steps % cfg.evalEvery === 0) {
        const mean = evalReturns[k++] ?? evalReturns.at(-1)!;
        evals.push({ envSteps: steps, mean, std: 0 });
        await opts.hooks?.onEvaluation?.({ envSteps: steps, mean, std: 0, returns: [mean] });
      }
      obs = r.obs;
    }
    vec.close();
    return { envSteps: steps, updates: steps, ms: 0, evals, startEnvSteps: 0, startUpdates: 0, evalMs: 0, lastReturns: [] } as OnlineResult;
  };
}

const ONLINE: OnlineConfig = {
  env: 'pendulum', seed: 3, numEnvs: 2, envSteps: 600, warmupSteps: 100, updatesPerStep: 1, replayCapacity: 1000,
  evalEvery: 150, evalEpisodes: 1, logEvery: 1000, checkpointEvery: 1000,
};
const CTX: RunContext = { cfg: { logEvery: 1000, checkpointEvery: 1000 }, log: null, quiet: true, stream: { write: () => true } };
const SIZE = 250;
const KINDS: DatasetKind[] = ['random', 'medium', 'medium-replay', 'expert', 'medium-expert'];

let dir = '';
let result: RecipeResult;
let agent: StubAgent;
const seen: TransitionChunk[] = [];

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'recipe-test-'));
  agent = new StubAgent();
  // returns cross the target (-900) at the third evaluation, 450 env steps: 225 per copy, so each copy has one
  // whole 200-step episode and one cut after 25 steps
  result = await runRecipe(agent, ONLINE, { size: SIZE, algorithm: 'STUB', medium: { return: -900 }, explore: false, seed: 11, collectEnvs: 4 }, CTX, {
    dir, train: scriptedLoop([-1200, -1000, -700, -300], seen), keepData: true, say: () => {},
  });
});

t.after(() => {
  agent.dispose();
  rmSync(dir, { recursive: true, force: true });
});

function assertSameData(a: D4RLData, b: D4RLData, label: string): void {
  assert.is(a.size, b.size, `${label} size`);
  assert.is(a.obsDim, b.obsDim);
  assert.is(a.actDim, b.actDim);
  for (const key of ['observations', 'actions', 'rewards', 'terminals', 'timeouts', 'nextObservations'] as const) {
    assert.ok(a[key] !== undefined && b[key] !== undefined, `${label} ${key} present`);
    assert.equal(Array.from(a[key]!), Array.from(b[key]!), `${label} ${key}`);
  }
  assert.equal(Object.keys(a.infos ?? {}).sort(), Object.keys(b.infos ?? {}).sort(), `${label} infos keys`);
  for (const [key, info] of Object.entries(a.infos ?? {})) {
    assert.equal(b.infos![key]!.shape, info.shape, `${label} infos/${key} shape`);
    assert.equal(Array.from(b.infos![key]!.data), Array.from(info.data), `${label} infos/${key}`);
  }
  // a written file adds the digest of its contents; the rest of the metadata must agree
  const rest = (m: D4RLData['metadata']) => {
    const { [CONTENT_DIGEST_KEY]: _digest, ...others } = m ?? {};
    return Object.keys(others).length ? others : undefined;
  };
  assert.equal(rest(a.metadata), rest(b.metadata), `${label} metadata`);
}

t('writes the five datasets; each reads back identically and validates', async () => {
  assert.equal(result.files.map((f) => f.kind), ['random', 'medium', 'medium-replay', 'expert', 'medium-expert']);
  for (const kind of KINDS) {
    const file = join(dir, `pendulum-${kind}.hdf5`);
    assert.ok(existsSync(file), file);
    const read = await readD4RL(file);
    validateD4RL(read, kind);
    assertSameData(result.data![kind]!, read, kind);
    assert.is(read.metadata!['created_by'], RECIPE_CREATED_BY);
    assert.is(read.metadata!['algorithm'], 'STUB');
    assert.is(read.metadata!['env_id'], 'Pendulum-v1');
    const entry = result.files.find((f) => f.kind === kind)!;
    assert.is(entry.sha256, createHash('sha256').update(readFileSync(file)).digest('hex'));
  }
  for (const f of ['pendulum-medium-policy.safetensors', 'pendulum-expert-policy.safetensors', 'pendulum-medium-agent.safetensors', 'recipe.json', 'summary.md']) {
    assert.ok(existsSync(join(dir, f)), f);
  }
});

t('row counts, flags and metadata are as asked', () => {
  const d = result.data!;
  for (const kind of ['random', 'medium', 'expert'] as const) {
    assert.is(d[kind]!.size, SIZE, kind);
    assert.is(d[kind]!.infos!['qpos']!.shape.join(), `${SIZE},1`, `${kind} qpos`);
    // Pendulum never terminates; 200-step episodes end in timeouts, the cut last one in neither flag
    assert.is(d[kind]!.terminals.reduce((a, b) => a + b, 0), 0);
    assert.is(d[kind]!.timeouts.reduce((a, b) => a + b, 0), 1);
    assert.is(d[kind]!.timeouts[199], 1);
  }
  assert.is(d['medium-expert']!.size, 2 * SIZE);
  assert.is(d['medium-replay']!.size, 450);
  assert.is(result.medium.reached, true);
  assert.is(result.medium.envSteps, 450);
  assert.is(result.medium.replayRows, 450);
  assert.is(result.medium.updates, 350);
  assert.is(result.final.envSteps, 600);
  assert.is(d['medium']!.metadata!['env_steps'], 450);
  assert.is(d['medium']!.metadata!['iteration'], 350);
  assert.is(d['medium']!.metadata!['policy'], 'medium');
  assert.is(d['expert']!.metadata!['env_steps'], 600);
  assert.is(d['expert']!.metadata!['policy'], 'expert');
  assert.is(d['random']!.metadata!['policy'], 'random');
  assert.equal(Array.from(new Set(d['random']!.infos!['action_log_probs']!.data)), [Math.fround(-Math.log(4))]);
  const manifest = JSON.parse(readFileSync(result.manifest, 'utf8')) as { files: { name: string; rows: number }[]; medium: { envSteps: number } };
  assert.equal(manifest.files.map((f) => [f.name, f.rows]), [
    ['pendulum-random', SIZE], ['pendulum-medium', SIZE], ['pendulum-medium-replay', 450], ['pendulum-expert', SIZE], ['pendulum-medium-expert', 2 * SIZE],
  ]);
  assert.is(manifest.medium.envSteps, 450);
  assert.ok(result.summaryTable.includes('pendulum-medium-replay'));
});

t('medium-replay is the hook transitions up to the medium point, regrouped into whole episodes per copy', () => {
  const replay = result.data!['medium-replay']!;
  // independent regrouping of what the loop handed over: copy c's rows in order, episodes ordered by start
  const rows: { env: number; chunk: TransitionChunk; i: number; order: number }[] = [];
  let order = 0;
  for (const chunk of seen) for (let i = 0; i < chunk.rewards.length; i++) rows.push({ env: chunk.envIndex[i]!, chunk, i, order: order++ });
  const windowRows = rows.slice(0, 450);
  const episodes: (typeof windowRows)[] = [];
  const open = new Map<number, typeof windowRows>();
  for (const r of windowRows) {
    if (!open.has(r.env)) { open.set(r.env, []); episodes.push(open.get(r.env)!); }
    open.get(r.env)!.push(r);
    if (r.chunk.timeouts[r.i] || r.chunk.terminals[r.i]) open.delete(r.env);
  }
  episodes.sort((a, b) => a[0]!.order - b[0]!.order);
  const expected = episodes.flat();
  assert.is(expected.length, replay.size);
  expected.forEach((r, k) => {
    assert.equal(Array.from(replay.observations.subarray(3 * k, 3 * k + 3)), Array.from(r.chunk.observations.subarray(3 * r.i, 3 * r.i + 3)), `row ${k} obs`);
    assert.is(replay.actions[k], r.chunk.actions[r.i], `row ${k} action`);
    assert.is(replay.rewards[k], r.chunk.rewards[r.i], `row ${k} reward`);
    assert.equal(Array.from(replay.nextObservations!.subarray(3 * k, 3 * k + 3)), Array.from(r.chunk.nextObservations.subarray(3 * r.i, 3 * r.i + 3)), `row ${k} next`);
    assert.is(replay.terminals[k], 0);
  });
  // episodes: copy 0 [0, 200), copy 1 [200, 400), then the cut ones of 25 rows each, ending in timeouts
  const ends = Array.from(replay.timeouts).flatMap((v, k) => (v ? [k] : []));
  assert.equal(ends, [199, 399, 424, 449]);
  // within an episode, next observation = the following row's observation
  for (let k = 0; k < replay.size - 1; k++) {
    if (replay.timeouts[k]) continue;
    assert.equal(Array.from(replay.nextObservations!.subarray(3 * k, 3 * k + 3)), Array.from(replay.observations.subarray(3 * k + 3, 3 * k + 6)), `row ${k} continuity`);
  }
  // simulator state recovered by replaying the logged actions: Pendulum's qpos = theta, qvel = thetadot
  assert.equal(replay.infos!['qpos']!.shape, [450, 1]);
  assert.equal(replay.infos!['qvel']!.shape, [450, 1]);
  for (let k = 0; k < replay.size; k++) {
    const theta = replay.infos!['qpos']!.data[k]!;
    assert.ok(Math.abs(Math.cos(theta) - replay.observations[3 * k]!) < 1e-5 && Math.abs(Math.sin(theta) - replay.observations[3 * k + 1]!) < 1e-5, `row ${k} qpos`);
    assert.is(replay.infos!['qvel']!.data[k], replay.observations[3 * k + 2], `row ${k} qvel`);
  }
  assert.is(replay.metadata!['episodes_cut'], 2);
  assert.is(replay.metadata!['num_episodes'], 2);
  const entry = result.files.find((f) => f.kind === 'medium-replay')!;
  assert.is(entry.episodes, 2, 'cut episodes are left out of the summary');
  const whole = [0, 200].map((a) => replay.rewards.subarray(a, a + 200).reduce((x, y) => x + y, 0));
  assert.ok(Math.abs(entry.returnMean - (whole[0]! + whole[1]!) / 2) < 1e-3, `${entry.returnMean} vs ${whole}`);
});

t('medium and expert rows come from the snapshots taken at the medium evaluation and at the end', () => {
  const check = (data: D4RLData, policyFile: string, bias: number) => {
    const weights = decodeSafetensors(readFileSync(join(dir, policyFile))).tensors;
    const w = weights.get('weight')!.data;
    assert.is(weights.get('bias')!.data[0], Math.fround(bias), `${policyFile} bias`);
    for (let k = 0; k < data.size; k++) {
      const z = w[0]! * data.observations[3 * k]! + w[1]! * data.observations[3 * k + 1]! + w[2]! * data.observations[3 * k + 2]! + bias;
      const want = 2 * Math.tanh(z); // [-1, 1] mapped onto Pendulum's [-2, 2]
      assert.ok(Math.abs(data.actions[k]! - want) < 1e-4, `${policyFile} row ${k}: ${data.actions[k]} vs ${want}`);
    }
  };
  check(result.data!['medium']!, 'pendulum-medium-policy.safetensors', biasAt(450));
  check(result.data!['expert']!, 'pendulum-expert-policy.safetensors', biasAt(600));
});

t('the agent is left holding its final weights', async () => {
  assert.equal(Array.from(await agent.actor.bias!.read()), [Math.fround(biasAt(600))]);
});

t('expert "best": the expert rows come from the best evaluation; the agent is left with its final weights', async () => {
  const bestDir = mkdtempSync(join(tmpdir(), 'recipe-best-test-'));
  const stub = new StubAgent();
  try {
    // medium (>= -800) at 300 env steps, best evaluation at 450, final (worse) at 600
    const res = await runRecipe(stub, ONLINE, { size: 40, algorithm: 'STUB', medium: { return: -800 }, explore: false, seed: 2, expert: 'best' }, CTX, {
      dir: bestDir, train: scriptedLoop([-1200, -700, -400, -1000], []), keepData: true, say: () => {},
    });
    assert.equal([res.medium.envSteps, res.expert.envSteps, res.expert.source, res.final.envSteps], [300, 450, 'best', 600]);
    const expertBias = decodeSafetensors(readFileSync(join(bestDir, 'pendulum-expert-policy.safetensors'))).tensors.get('bias')!.data[0];
    assert.is(expertBias, Math.fround(biasAt(450)));
    assert.is(res.data!['expert']!.metadata!['env_steps'], 450);
    assert.is(res.data!['expert']!.metadata!['expert_policy'], 'best');
    assert.ok(existsSync(join(bestDir, 'pendulum-final-agent.safetensors')));
    assert.equal(Array.from(await stub.actor.bias!.read()), [Math.fround(biasAt(600))]);
  } finally {
    stub.dispose();
    rmSync(bestDir, { recursive: true, force: true });
  }
});

t('medium rule "closest": the best evaluation below the target when it is closer than the first above', async () => {
  const closeDir = mkdtempSync(join(tmpdir(), 'recipe-closest-test-'));
  const stub = new StubAgent();
  try {
    // target -900: -1000 at 300 is 100 below, -700 at 450 is 200 above
    const res = await runRecipe(stub, ONLINE, { size: 40, algorithm: 'STUB', medium: { return: -900 }, mediumRule: 'closest', explore: false, seed: 2 }, CTX, {
      dir: closeDir, train: scriptedLoop([-1200, -1000, -700, -300], []), keepData: true, say: () => {},
    });
    assert.equal([res.medium.envSteps, res.medium.evalMean, res.medium.replayRows, res.medium.reached], [300, -1000, 300, true]);
    assert.is(res.data!['medium-replay']!.size, 300);
    assert.is(decodeSafetensors(readFileSync(join(closeDir, 'pendulum-medium-policy.safetensors'))).tensors.get('bias')!.data[0], Math.fround(biasAt(300)));
  } finally {
    stub.dispose();
    rmSync(closeDir, { recursive: true, force: true });
  }
});

t('medium-expert is medium followed by expert', async () => {
  const medium = await readD4RL(join(dir, 'pendulum-medium.hdf5'));
  const expert = await readD4RL(join(dir, 'pendulum-expert.hdf5'));
  const both = await readD4RL(join(dir, 'pendulum-medium-expert.hdf5'));
  const joined = concatD4RL([medium, expert], both.metadata);
  assertSameData(joined, both, 'medium-expert');
  assert.is(both.metadata!['medium_rows'], SIZE);
  assert.is(both.metadata!['expert_rows'], SIZE);
});

t('episodeRows: interleaved copies, terminals, cut episodes', () => {
  const log = new TransitionLog(1, 1);
  // copy 0: episode ends (terminal) at its 2nd step, then a new one runs; copy 1: one long episode, timeout at its 3rd
  const steps: Array<[number, number, number]> = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]];
  steps.forEach(([env, term, tout], i) => {
    log.append({
      observations: Float32Array.of(i), actions: Float32Array.of(10 + i), rewards: Float32Array.of(i), nextObservations: Float32Array.of(100 + i),
      terminals: Uint8Array.of(term), timeouts: Uint8Array.of(tout), envIndex: Uint16Array.of(env),
    });
  });
  const out = episodeRows(log);
  assert.equal(Array.from(out.order), [0, 2, 1, 3, 5, 4, 6]);
  assert.equal(Array.from(out.data.terminals), [0, 1, 0, 0, 0, 0, 0]);
  assert.equal(Array.from(out.data.timeouts), [0, 0, 0, 0, 1, 0, 1]);
  assert.is(out.cut, 1);
  assert.equal(out.completeReturns, [2, 9]);
  const window = episodeRows(log, 4);
  assert.equal(Array.from(window.order), [0, 2, 1, 3]);
  assert.equal(Array.from(window.data.timeouts), [0, 0, 0, 1]);
});

t('runs with the real online loop: the hook transitions up to the first evaluation become medium-replay', async () => {
  const loopDir = mkdtempSync(join(tmpdir(), 'recipe-loop-test-'));
  const stub = new StubAgent();
  const log = new TransitionLog(3, 1);
  try {
    const online: OnlineConfig = { ...ONLINE, numEnvs: 3, envSteps: 240, warmupSteps: 60, evalEvery: 120, evalEpisodes: 1 };
    const res = await runRecipe(stub, online, { size: 60, algorithm: 'STUB', medium: { return: -1e9 }, seed: 5, collectEnvs: 2 }, CTX, {
      dir: loopDir, keepData: true, say: () => {},
      train: (a, c, x, o) => trainOnline(a, c, x, { ...o, hooks: { ...o.hooks, onTransitions: (tr, n) => { log.append(structuredClone(tr)); o.hooks!.onTransitions!(tr, n); } } }),
    });
    assert.is(res.medium.envSteps, 120);
    assert.is(res.medium.updates, 60);
    assert.is(res.final.envSteps, 240);
    assert.is(res.final.updates, 180);
    assert.equal(res.training.evals.map((e) => e.envSteps), [120, 240]);
    const replay = await readD4RL(join(loopDir, 'pendulum-medium-replay.hdf5'));
    const { infos, ...rest } = replay;
    assertSameData(episodeRows(log, 120).data, { ...rest, metadata: undefined }, 'loop medium-replay');
    assert.equal(Object.keys(infos ?? {}).sort(), ['qpos', 'qvel'], 'simulator state replayed from the real loop');
    // a replay that does not reproduce the logged observations says so instead of inventing a state
    const wrong = await replayPhysics(log, 'Pendulum-v1', online.seed + 1, 120);
    assert.ok('error' in wrong && /observation/.test(wrong.error), JSON.stringify(wrong).slice(0, 200));
    assert.equal(Array.from(replay.timeouts).flatMap((v, k) => (v ? [k] : [])), [39, 79, 119]); // three copies cut after 40 steps each
    for (const kind of KINDS) validateD4RL(await readD4RL(join(loopDir, `pendulum-${kind}.hdf5`)), kind);
    assert.is(res.data!['medium-expert']!.size, 120);
  } finally {
    stub.dispose();
    rmSync(loopDir, { recursive: true, force: true });
  }
});

t('command line: --help lists the recipe, shared and agent options; bad input gets a clear error', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, ['scripts/dataset-recipe.ts', ...args], { encoding: 'utf8' });
  const help = run('--help');
  assert.is(help.status, 0, help.stderr);
  for (const flag of ['--agent <sac|sdac>', '--size <n>', '--medium-score', '--medium-return', '--medium-rule', '--collect', '--expert', '--steps', '--eval-every', '--hidden']) {
    assert.ok(help.stdout.includes(flag), `--help mentions ${flag}`);
  }
  const both = run('--medium-score', '10', '--medium-return=-500');
  assert.is(both.status, 1);
  assert.match(both.stderr, /give --medium-score or --medium-return, not both/);
  const noReference = run('--env', 'mountaincar');
  assert.is(noReference.status, 1);
  assert.match(noReference.stderr, /no reference returns for 'MountainCarContinuous-v0'.*--medium-return/);
  const badAgent = run('--agent', 'ppo');
  assert.is(badAgent.status, 1);
  assert.match(badAgent.stderr, /--agent must be one of sac, sdac/);
});

t('summary table: one row per file; a file without complete episodes shows dashes, not NaN', () => {
  const row = { kind: 'medium-replay' as const, name: 'x-medium-replay', file: 'x.hdf5', rows: 500, episodes: 0, returnMean: Number.NaN, returnStd: Number.NaN, normalizedScore: null, policyFile: null, bytes: 1, sha256: '' };
  const table = formatSummaryTable([row, { ...row, name: 'x-expert', episodes: 3, returnMean: -200.04, returnStd: 5, normalizedScore: 97.25 }]);
  const lines = table.split('\n');
  assert.is(lines.length, 4);
  assert.not.ok(table.includes('NaN'));
  assert.match(lines[2]!, /^\| x-medium-replay \|\s+500 \|\s+0 \|\s+- \|\s+- \|\s+- \|$/);
  assert.match(lines[3]!, /-200\.0 \|\s+5\.0 \|\s+97\.3 \|$/);
});

// ---- h5py agrees with the project's reader

function h5pyAvailable(): string | null {
  const python = ['/usr/bin/python3', 'python3'].find((p) => spawnSync(p, ['-c', 'import h5py, numpy'], { stdio: 'ignore' }).status === 0);
  return python ?? null;
}

interface DumpEntry { key: string; dtype: string; shape: number[]; sha256?: string; sum?: number; value?: unknown }

function bytesSha(a: ArrayBufferView): string {
  return createHash('sha256').update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength)).digest('hex');
}

// without h5py the check is reported as skipped, not as passed (.ci/run installs Debian's python3-h5py)
const python = h5pyAvailable();
(python ? t : t.skip)('h5py reads the generated files as the project reader does', async () => {
  if (!python) return;
  for (const kind of ['random', 'medium-replay'] as const) {
    const file = join(dir, `pendulum-${kind}.hdf5`);
    const dump = JSON.parse(execFileSync(python, ['scripts/h5py-dump.py', file], { encoding: 'utf8' })) as { datasets: DumpEntry[] };
    const data = await readD4RL(file);
    const byKey = new Map(dump.datasets.map((e) => [e.key, e]));
    const arrays: Array<[string, ArrayBufferView, string, number[]]> = [
      ['observations', data.observations, 'float32', [data.size, 3]],
      ['actions', data.actions, 'float32', [data.size, 1]],
      ['rewards', data.rewards, 'float32', [data.size]],
      ['next_observations', data.nextObservations!, 'float32', [data.size, 3]],
      ['terminals', data.terminals, 'uint8', [data.size]],
      ['timeouts', data.timeouts, 'uint8', [data.size]],
      ...Object.entries(data.infos ?? {}).map(([k, v]): [string, ArrayBufferView, string, number[]] => [`infos/${k}`, v.data, v.data instanceof Float32Array ? 'float32' : 'float64', v.shape]),
    ];
    for (const [key, values, dtype, shape] of arrays) {
      const e = byKey.get(key);
      assert.ok(e, `${kind}: h5py sees ${key}`);
      assert.is(e!.dtype, dtype, `${kind} ${key} dtype`);
      assert.equal(e!.shape, shape, `${kind} ${key} shape`);
      assert.is(e!.sha256, bytesSha(values), `${kind} ${key} values`);
    }
    const metaKeys = dump.datasets.filter((e) => e.key.startsWith('metadata/'));
    assert.equal(metaKeys.map((e) => e.key.slice('metadata/'.length)).sort(), Object.keys(data.metadata!).sort(), `${kind} metadata keys`);
    for (const e of metaKeys) {
      const ours = data.metadata![e.key.slice('metadata/'.length)];
      const theirs = e.dtype === 'uint8' && typeof ours === 'boolean' ? e.value === 1 : e.value;
      assert.equal(theirs, ours, `${kind} ${e.key}`);
    }
    const covered = new Set([...arrays.map(([k]) => k), ...metaKeys.map((e) => e.key)]);
    assert.equal(dump.datasets.map((e) => e.key).filter((k) => !covered.has(k)), [], `${kind}: keys h5py sees that the reader does not`);
  }
});

t.run();

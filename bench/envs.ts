// Environment throughput: steps per second of every registered environment on its own and as a VecEnv of 1, 16
// and 64 copies (uniform random actions, automatic resets), and evaluation throughput (episodes per second)
// through evaluate() with a trivial tensor policy on the GPU, which adds one upload and one readback per step.
// Prints a table and writes the numbers as JSON.
import { parseArgs } from 'node:util';
import { mkdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { envIds, makeEnv, makeVecEnv } from '../envs/registry.ts';
import { evaluate, gpuPolicy } from '../envs/evaluate.ts';
import type { Env } from '../envs/core.ts';
import { init, type Runtime } from '../engine/runtime.ts';
import { clamp, scale } from '../engine/ops/elementwise.ts';
import { slice } from '../engine/ops/shape.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    seconds: { type: 'string' },
    env: { type: 'string', multiple: true },
    'eval-episodes': { type: 'string' },
    out: { type: 'string', default: 'bench/results' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  console.log(`usage: node bench/envs.ts [--quick] [--seconds S] [--env ID ...] [--eval-episodes N] [--out DIR]

Measures environment steps per second (one environment, and VecEnv of 1, 16 and 64 copies, random actions) for
every registered environment, and evaluation throughput (episodes/s through evaluate() with a trivial GPU
policy: N/8 episodes on 1 copy, N episodes on 16 copies). Each stepping case is timed after an untimed
warm-up of a quarter window. Prints a table and writes DIR/envs-<adapter or host>.json.
  --quick            shorter timing windows and fewer evaluation episodes
  --seconds S        timing window per stepping case (default 2, quick 0.4)
  --env ID           only this environment (repeatable; ids or aliases as makeEnv accepts them)
  --eval-episodes N  episodes of the 16-copy evaluation case (default 32, quick 16)`);
  process.exit(0);
}

function positive(flag: string, text: string | undefined, fallback: number, integer = false): number {
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
    console.error(`bench/envs: --${flag} must be a positive ${integer ? 'integer' : 'number'}, got '${text}'`);
    process.exit(1);
  }
  return v;
}
const seconds = positive('seconds', args.seconds, args.quick ? 0.4 : 2);
const warmup = seconds / 4;
const evalEpisodes = positive('eval-episodes', args['eval-episodes'], args.quick ? 16 : 32, true);
const vecSizes = [1, 16, 64];

// one instance per Gymnasium id (aliases name the same environments)
const ids: string[] = [];
for (const id of args.env ?? envIds()) {
  let env: Env;
  try {
    env = await makeEnv(id, { seed: 0 });
  } catch (err) {
    console.error(`bench/envs: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
  if (!ids.includes(env.id)) ids.push(env.id);
  env.close();
}

let rt: Runtime | null = null;
try {
  rt = await init();
} catch (err) {
  console.error(`no WebGPU device (${err instanceof Error ? err.message : String(err)}); evaluation cases are skipped`);
}
const tag = (rt ? (rt.info.adapterClass === 'software' ? 'software' : rt.info.vendor || 'gpu') : hostname()).replace(/[^a-z0-9-]/gi, '_');

/** A pool of uniform random actions in the box, cycled, so the timing measures the simulator, not the generator. */
function actionPool(env: Env, rows: number): Float64Array {
  let s = 12345;
  const pool = new Float64Array(rows * env.actDim);
  for (let i = 0; i < pool.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = i % env.actDim;
    pool[i] = env.actionLow[j]! + (env.actionHigh[j]! - env.actionLow[j]!) * (s / 4294967296);
  }
  return pool;
}

interface Row {
  env: string;
  case: string;
  copies: number;
  stepsPerSec: number;
  episodesPerSec: number | null;
  seconds: number;
}
const rows: Row[] = [];
function report(row: Row): void {
  rows.push(row);
  const eps = row.episodesPerSec === null ? '' : row.episodesPerSec.toFixed(1);
  console.log(`${row.env.padEnd(26)} ${row.case.padEnd(22)} ${row.stepsPerSec.toFixed(0).padStart(12)} ${eps.padStart(12)} ${row.seconds.toFixed(2).padStart(8)}`);
}

const where = rt ? `${rt.info.description || rt.info.vendor} (${rt.info.adapterClass})` : 'no GPU';
console.log(`host ${hostname()}, node ${process.version}, adapter: ${where}; stepping window ${seconds}s, ${evalEpisodes} evaluation episodes`);
console.log(`${'env'.padEnd(26)} ${'case'.padEnd(22)} ${'steps/s'.padStart(12)} ${'episodes/s'.padStart(12)} ${'time s'.padStart(8)}`);

for (const id of ids) {
  // single environment, reset by hand when an episode ends; an untimed window first (wasm tier-up, JIT)
  {
    const env = await makeEnv(id, { seed: 0 });
    const pool = actionPool(env, 4096);
    const { actDim } = env;
    env.reset(0);
    let steps = 0;
    const run = (window: number) => {
      let count = 0;
      let episodes = 0;
      const t0 = performance.now();
      let elapsed = 0;
      while (elapsed < window) {
        for (let k = 0; k < 256; k++) {
          const row = steps % 4096;
          const r = env.step(pool.subarray(row * actDim, (row + 1) * actDim));
          steps++;
          count++;
          if (r.terminated || r.truncated) {
            episodes++;
            env.reset();
          }
        }
        elapsed = (performance.now() - t0) / 1000;
      }
      return { count, episodes, elapsed };
    };
    run(warmup);
    const { count, episodes, elapsed } = run(seconds);
    env.close();
    report({ env: id, case: 'single env', copies: 1, stepsPerSec: count / elapsed, episodesPerSec: episodes / elapsed, seconds: elapsed });
  }
  for (const copies of vecSizes) {
    const vec = await makeVecEnv(id, copies, { seed: 0 });
    const first = vec.envs[0]!;
    const batch = copies * vec.actDim;
    const rowsNeeded = Math.max(4096, copies * 4);
    const actions = actionPool(first, rowsNeeded);
    vec.reset(0);
    let rounds = 0;
    const run = (window: number) => {
      let count = 0;
      let episodes = 0;
      const t0 = performance.now();
      let elapsed = 0;
      while (elapsed < window) {
        for (let k = 0; k < 16; k++) {
          const start = ((rounds * copies) % (rowsNeeded - copies + 1)) * vec.actDim;
          const r = vec.step(actions.subarray(start, start + batch));
          rounds++;
          count++;
          for (let i = 0; i < copies; i++) episodes += r.terminated[i]! | r.truncated[i]!;
        }
        elapsed = (performance.now() - t0) / 1000;
      }
      return { count, episodes, elapsed };
    };
    run(warmup);
    const { count, episodes, elapsed } = run(seconds);
    vec.close();
    report({ env: id, case: `VecEnv x${copies}`, copies, stepsPerSec: (count * copies) / elapsed, episodesPerSec: episodes / elapsed, seconds: elapsed });
  }
  if (rt) {
    const probe = await makeEnv(id, { seed: 0 });
    const actDim = probe.actDim;
    const high = probe.actionHigh[0]!;
    probe.close();
    // a trivial tensor policy: a scaled slice of the observation, clipped to the box (one small kernel chain)
    const policy = gpuPolicy((obs) => clamp(scale(slice(obs, 0, actDim, 1), 0.5), -high, high));
    // one copy steps one episode at a time (one policy call per step), so it runs fewer episodes
    for (const [copies, episodes] of [[1, Math.max(2, Math.round(evalEpisodes / 8))], [16, evalEpisodes]] as const) {
      await evaluate(policy, () => makeEnv(id), { episodes: Math.min(copies, 4), numEnvs: copies, seed: 1000 });
      const t0 = performance.now();
      const res = await evaluate(policy, () => makeEnv(id), { episodes, numEnvs: copies, seed: 0 });
      const elapsed = (performance.now() - t0) / 1000;
      const steps = res.lengths.reduce((a, b) => a + b, 0);
      report({ env: id, case: `evaluate gpu x${copies}`, copies, stepsPerSec: steps / elapsed, episodesPerSec: episodes / elapsed, seconds: elapsed });
    }
  }
}

mkdirSync(args.out, { recursive: true });
const file = `${args.out}/envs-${tag}.json`;
writeFileSync(
  file,
  JSON.stringify({
    host: hostname(), node: process.version, adapter: rt?.info.description ?? null, adapterClass: rt?.info.adapterClass ?? null,
    seconds, evalEpisodes, date: new Date().toISOString(), rows,
  }, null, 2),
);
console.log(`wrote ${file}`);
process.exit(0);

// D4RL's dataset recipe with the project's own online agents: train an agent online, keep its policy at the
// first evaluation that reaches a "medium" return and at the end, and write the five locomotion datasets.
//
//   <env>-random         N rows of uniform random actions
//   <env>-medium         N rows of the medium snapshot's policy
//   <env>-medium-replay  every transition the agent collected until the medium snapshot (its replay buffer),
//                        regrouped into whole episodes; an episode cut by the snapshot ends in a timeout
//   <env>-expert         N rows of the final policy (or of the best evaluation's, on request)
//   <env>-medium-expert  medium followed by expert (2N rows)
//   <env>-full-replay    (optional) every transition of the whole run, regrouped the same way
//
// Every file has next_observations, terminals (real terminations) apart from timeouts (the time limit, or the
// end of a replay window), infos/qpos and infos/qvel where the environment has a simulator state (for the
// replay files recovered by re-simulating the logged actions, checked against the logged observations), and
// metadata (algorithm, policy, iteration = gradient updates, env_steps, created_by, ...); the generating
// policies are saved next to the files.
//
// D4RL trained SAC, stopped a run early for "medium" (about a third of the expert's score) and collected 1M
// rows per policy with the stochastic policy (its files record action log-probabilities); this module does the
// same with any OnlineAgent, with the row count as a setting.
//
// The medium target is a return, given directly or as a D4RL normalised score (0 = uniform random, 100 = the
// reference expert of datasets/presets.ts), so the rule needs no knowledge of the run's final return. Default:
// a normalised score of 100/3, a third of the way from random to expert. A run that never reaches the target
// takes its best evaluation as the medium policy and says so (manifest: medium.reached = false).
//
// Run as a command (`node scripts/dataset-recipe.ts --help`).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { saveModule, loadModule } from '../engine/safetensors.ts';
import { dispose as disposeEngine } from '../engine/runtime.ts';
import { CliError, isMainModule, parseCli, runMain, type CliSpec, type OptionSpec, type OptionSpecs } from '../algorithms/common/cli.ts';
import { JsonlLog, currentRecords, formatDuration } from '../algorithms/common/monitor.ts';
import { writePicture } from '../algorithms/common/picture.ts';
import { RUN_FILES, createRunDir, encodeCheckpoint, loadCheckpoint } from '../algorithms/common/run-files.ts';
import { openDevice, tuningLog } from '../algorithms/common/command.ts';
import type { RunContext } from '../algorithms/common/phase.ts';
import { ONLINE_CLI_OPTIONS, envKey, onlineConfigFromArgs, type OnlineCommand, type OnlineCommandConfig } from '../algorithms/common/online-command.ts';
import { agentPolicy, trainOnline, updatesDue, type OnlineAgent, type OnlineConfig, type OnlineHooks, type OnlineResult } from '../algorithms/common/online-loop.ts';
import { onlineCurvesSvg } from '../algorithms/common/curves.ts';
import { SAC_COMMAND } from '../algorithms/sac.ts';
import { SDAC_COMMAND } from '../algorithms/sdac.ts';
import { randomPolicy } from '../envs/controllers.ts';
import type { Env } from '../envs/core.ts';
import { meanStd, type BatchPolicy } from '../envs/evaluate.ts';
import { makeEnv } from '../envs/registry.ts';
import { collect, episodeReturns } from '../datasets/collect.ts';
import { writeD4RL, type D4RLData } from '../datasets/d4rl.ts';
import { REFERENCE_SCORES, normalizedScore, referenceFamily, type ReferenceScore } from '../datasets/presets.ts';
import { TransitionLog, episodeRows, type PhysicsColumns, type TransitionChunk } from '../datasets/transition-log.ts';

/** Recorded with every dataset as metadata/created_by. */
export const RECIPE_CREATED_BY = 'webdiffuser scripts/dataset-recipe.ts';

export type DatasetKind = 'random' | 'medium' | 'medium-replay' | 'expert' | 'medium-expert' | 'full-replay';

/** Where "medium" is: a return, or a normalised score against the environment's reference returns. */
export type MediumTarget = { return: number } | { score: number };

/** The default medium target: a third of the way from the random to the expert reference return. */
export const DEFAULT_MEDIUM_SCORE = 100 / 3;

/** The reference returns of an environment's family, or null when datasets/presets.ts has none. */
export function referenceFor(env: string): ReferenceScore | null {
  try {
    return REFERENCE_SCORES[referenceFamily(env)] ?? null;
  } catch {
    return null;
  }
}

/** The return an evaluation must reach to count as medium, and the rule in words. */
export function mediumTargetReturn(env: string, target: MediumTarget): { value: number; rule: string } {
  if ('return' in target) {
    if (!Number.isFinite(target.return)) throw new Error(`mediumTargetReturn: the target return must be finite, got ${target.return}`);
    return { value: target.return, rule: `evaluation return >= ${target.return}` };
  }
  if (!Number.isFinite(target.score)) throw new Error(`mediumTargetReturn: the target score must be finite, got ${target.score}`);
  const ref = referenceFor(env);
  if (!ref) {
    throw new Error(`mediumTargetReturn: no reference returns for '${env}' to turn a normalised score into a return; give the target as a return (--medium-return)`);
  }
  const value = ref.min + (target.score / 100) * (ref.max - ref.min);
  return { value, rule: `normalised score >= ${formatFixed(target.score, 1)}: return >= ${formatFixed(value, 1)} (random ${formatFixed(ref.min, 1)}, expert ${formatFixed(ref.max, 1)})` };
}

function formatFixed(v: number, digits: number): string {
  return Number.isFinite(v) ? v.toFixed(digits) : String(v);
}

/** A family name for file names: 'Pendulum-v1' -> 'pendulum', 'HalfCheetah-v4' -> 'halfcheetah'. */
export function datasetPrefix(envId: string): string {
  return envId.replace(/-v\d+$/, '').toLowerCase().replace(/[^a-z0-9]+/g, '');
}

/** Rows of `parts` one after the other; every part must have the same dimensions and infos keys. */
export function concatD4RL(parts: readonly D4RLData[], metadata?: D4RLData['metadata']): D4RLData {
  if (parts.length === 0) throw new Error('concatD4RL: nothing to concatenate');
  const first = parts[0]!;
  const { obsDim, actDim } = first;
  const infoKeys = Object.keys(first.infos ?? {}).sort();
  for (const p of parts) {
    if (p.obsDim !== obsDim || p.actDim !== actDim) throw new Error(`concatD4RL: dimensions differ (${p.obsDim}/${p.actDim} against ${obsDim}/${actDim})`);
    const keys = Object.keys(p.infos ?? {}).sort();
    if (keys.join() !== infoKeys.join()) throw new Error(`concatD4RL: infos keys differ ([${keys}] against [${infoKeys}])`);
    if ((p.nextObservations === undefined) !== (first.nextObservations === undefined)) throw new Error('concatD4RL: some parts lack next_observations');
  }
  const size = parts.reduce((a, p) => a + p.size, 0);
  const join2 = <T extends Float32Array | Float64Array | Uint8Array>(arrays: T[], make: (n: number) => T): T => {
    const out = make(arrays.reduce((a, x) => a + x.length, 0));
    let at = 0;
    for (const x of arrays) {
      out.set(x as never, at);
      at += x.length;
    }
    return out;
  };
  const out: D4RLData = {
    size,
    obsDim,
    actDim,
    observations: join2(parts.map((p) => p.observations), (n) => new Float32Array(n)),
    actions: join2(parts.map((p) => p.actions), (n) => new Float32Array(n)),
    rewards: join2(parts.map((p) => p.rewards), (n) => new Float32Array(n)),
    terminals: join2(parts.map((p) => p.terminals), (n) => new Uint8Array(n)),
    timeouts: join2(parts.map((p) => p.timeouts), (n) => new Uint8Array(n)),
  };
  if (first.nextObservations) out.nextObservations = join2(parts.map((p) => p.nextObservations!), (n) => new Float32Array(n));
  if (infoKeys.length > 0) {
    out.infos = {};
    for (const key of infoKeys) {
      const infos = parts.map((p) => p.infos![key]!);
      const tail = infos[0]!.shape.slice(1);
      if (infos.some((x) => x.shape.slice(1).join() !== tail.join())) throw new Error(`concatD4RL: 'infos/${key}' shapes differ`);
      const data = infos.every((x) => x.data instanceof Float32Array)
        ? join2(infos.map((x) => x.data as Float32Array), (n) => new Float32Array(n))
        : join2(infos.map((x) => Float64Array.from(x.data)), (n) => new Float64Array(n));
      out.infos[key] = { data, shape: [size, ...tail] };
    }
  }
  if (metadata) out.metadata = metadata;
  return out;
}

/**
 * The simulator state (qpos, qvel) before each of the first `rows` logged transitions, recovered by replaying
 * every environment copy's logged actions in a fresh copy: copy i made with seed + i and reset with seed + i,
 * later episodes reset without a seed (continuing its stream), as the online loop's VecEnv does. The
 * simulators are deterministic, so each replayed observation, reward and flag must equal the logged one; the
 * first difference is returned as an error instead (e.g. a loop that seeds its copies differently).
 */
export async function replayPhysics(log: TransitionLog, envId: string, seed: number, rows = log.size): Promise<PhysicsColumns | { error: string }> {
  const c = log.columns(rows);
  const { obsDim, actDim } = log;
  const copies = new Map<number, { env: Env; obs: Float64Array }>();
  let qpos: Float32Array | null = null;
  let qvel: Float32Array | null = null;
  let nq = 0;
  let nv = 0;
  try {
    for (let i = 0; i < rows; i++) {
      const index = c.envIndex[i]!;
      let copy = copies.get(index);
      if (!copy) {
        const env = await makeEnv(envId, { seed: seed + index });
        copy = { env, obs: env.reset(seed + index) };
        copies.set(index, copy);
      }
      const { env } = copy;
      if (!env.physicsState) return { error: `${envId} has no simulator state` };
      const state = env.physicsState();
      if (!qpos || !qvel) {
        nq = state.qpos.length;
        nv = state.qvel.length;
        qpos = new Float32Array(rows * nq);
        qvel = new Float32Array(rows * nv);
      }
      for (let j = 0; j < obsDim; j++) {
        if (Math.fround(copy.obs[j]!) !== c.observations[i * obsDim + j]) {
          return { error: `replaying copy ${index} gives observation ${copy.obs[j]} at log row ${i} (dimension ${j}), the log holds ${c.observations[i * obsDim + j]}` };
        }
      }
      qpos.set(state.qpos, i * nq);
      qvel.set(state.qvel, i * nv);
      const r = env.step(c.actions.subarray(i * actDim, (i + 1) * actDim));
      if (Math.fround(r.reward) !== c.rewards[i] || (r.terminated ? 1 : 0) !== c.terminals[i]) {
        return { error: `replaying copy ${index} gives reward ${r.reward} (terminated ${r.terminated}) at log row ${i}, the log holds ${c.rewards[i]} (${c.terminals[i]})` };
      }
      copy.obs = r.terminated || r.truncated ? env.reset() : r.obs;
    }
  } finally {
    for (const { env } of copies.values()) env.close();
  }
  if (!qpos || !qvel) return { error: 'no rows to replay' };
  return { qpos, qvel, nq, nv };
}

// ---------------------------------------------------------------------------------------------------------
// The recipe

export interface RecipeSettings {
  /** Rows of the random, medium and expert datasets (medium-expert gets twice as many). */
  size: number;
  /** Name recorded as metadata/algorithm (D4RL: 'SAC'). */
  algorithm: string;
  medium: MediumTarget;
  /**
   * 'first' (default): the medium policy is the first evaluation at or above the target. 'closest': that one
   * or the best evaluation below the target before it, whichever return is closer to the target (for runs
   * whose return jumps past the target between two evaluations, as Pendulum's does).
   */
  mediumRule?: 'first' | 'closest';
  /** Collect medium and expert data with the behaviour policy (act(obs, true), as D4RL did) instead of the
   *  deterministic evaluation policy. Default true. */
  explore?: boolean;
  /** Environment copies stepped together while collecting (default 16); the data does not depend on it except
   *  through the order of a stochastic policy's random draws. */
  collectEnvs?: number;
  /** Seeds of the collected episodes: random from seed + 1e6, medium from seed + 2e6, expert from seed + 3e6. */
  seed: number;
  /** gzip level of the files (default 4), or false. */
  compression?: number | false;
  /** Also write <env>-full-replay: every transition of the run. */
  fullReplay?: boolean;
  /**
   * What a snapshot restores before collecting: 'agent' (default) every module of agent.parts (an agent whose
   * action choice also uses its critic, as SDAC's best-of-particles does, then acts as it did at the
   * snapshot), or 'actor' the policy network alone. Both files are written either way.
   */
  restore?: 'agent' | 'actor';
  /**
   * Which policy makes the expert rows: 'final' (default, as D4RL: the policy at the end of training) or
   * 'best' (the policy of the best evaluation, for runs whose last evaluations fall back).
   */
  expert?: 'final' | 'best';
}

export interface Snapshot {
  /** Training environment steps when the snapshot was taken, and gradient updates by then. */
  envSteps: number;
  updates: number;
  evalMean: number;
  evalStd: number;
  actor: Uint8Array;
  agent: Uint8Array;
}

export interface DatasetSummary {
  kind: DatasetKind;
  name: string;
  file: string;
  rows: number;
  /** Complete episodes: ended by a terminal or the time limit (not by the end of the data or of a replay window). */
  episodes: number;
  returnMean: number;
  returnStd: number;
  /** D4RL normalised score of the mean return (null without reference returns). */
  normalizedScore: number | null;
  /** The policy weights (saveModule of the actor) that generated the rows, if any. */
  policyFile: string | null;
  bytes: number;
  sha256: string;
}

export interface RecipeResult {
  dir: string;
  files: DatasetSummary[];
  medium: { reached: boolean; targetReturn: number; rule: string; envSteps: number; updates: number; evalMean: number; replayRows: number };
  final: { envSteps: number; updates: number; evalMean: number | null };
  /** The policy of the expert rows: the final one, or the best evaluation with settings.expert 'best'. */
  expert: { source: 'final' | 'best'; envSteps: number; updates: number; evalMean: number };
  training: OnlineResult;
  timings: { trainMs: number; collectMs: number; totalMs: number };
  manifest: string;
  summaryTable: string;
  /** The written datasets themselves, with opts.keepData. */
  data?: Partial<Record<DatasetKind, D4RLData>>;
}

export interface RecipeOptions {
  /** Output folder (created). */
  dir: string;
  /** The online loop (default: trainOnline of algorithms/common/online-loop.ts). */
  train?: (agent: OnlineAgent, cfg: OnlineConfig, ctx: RunContext, opts: { hooks?: OnlineHooks; checkpoint?: string }) => Promise<OnlineResult>;
  /** Training checkpoint path (default <dir>/checkpoint.safetensors). */
  checkpoint?: string;
  /** Progress and notes (default: stderr unless ctx.quiet). */
  say?: (line: string) => void;
  /** Extra entries for the manifest's config section (e.g. the agent's preset). */
  manifestExtra?: Record<string, unknown>;
  /** Return the datasets in the result as well (they are large at D4RL's sizes). */
  keepData?: boolean;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Mean return and normalised score of a dataset's episodes: those ending in a terminal or timeout, or the
 * given returns (a replay dataset passes its complete episodes, leaving out those cut by the window).
 */
export function datasetStats(data: D4RLData, env: string, returns = episodeReturns(data)): { episodes: number; returnMean: number; returnStd: number; normalizedScore: number | null } {
  const { mean, std } = meanStd(returns);
  const ref = referenceFor(env);
  return { episodes: returns.length, returnMean: mean, returnStd: std, normalizedScore: ref && returns.length > 0 ? normalizedScore(ref, mean) : null };
}

/** The per-file table printed at the end of a recipe. */
export function formatSummaryTable(files: readonly DatasetSummary[]): string {
  const head = ['dataset', 'rows', 'episodes', 'return mean', 'return std', 'norm. score'];
  const cell = (v: number | null) => (v === null || !Number.isFinite(v) ? '-' : formatFixed(v, 1));
  const rows = files.map((f) => [f.name, String(f.rows), String(f.episodes), cell(f.returnMean), cell(f.returnStd), cell(f.normalizedScore)]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(head), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
}

/**
 * Trains `agent` online with `online` and writes the recipe's datasets, policy snapshots, recipe.json (the
 * manifest) and summary.md into opts.dir. The agent is left holding its final weights.
 */
export async function runRecipe(agent: OnlineAgent, online: OnlineConfig, settings: RecipeSettings, ctx: RunContext, opts: RecipeOptions): Promise<RecipeResult> {
  const t0 = performance.now();
  const say = opts.say ?? ((line: string) => { if (!ctx.quiet) process.stderr.write(`${line}\n`); });
  if (!Number.isInteger(settings.size) || settings.size < 1) throw new Error(`runRecipe: size must be a positive integer, got ${settings.size}`);
  const explore = settings.explore ?? true;
  const restore = settings.restore ?? 'agent';
  const compression = settings.compression ?? 4;
  const collectEnvs = settings.collectEnvs ?? 16;
  const dir = opts.dir;
  mkdirSync(dir, { recursive: true });

  const probe = await makeEnv(online.env, { seed: settings.seed });
  const envId = probe.id;
  const space = { actDim: probe.actDim, actionLow: Float64Array.from(probe.actionLow), actionHigh: Float64Array.from(probe.actionHigh) };
  const maxEpisodeSteps = probe.maxEpisodeSteps;
  const obsDim = probe.obsDim;
  probe.close();
  if (agent.obsDim !== obsDim || agent.actDim !== space.actDim) {
    throw new Error(`runRecipe: the agent acts on obs ${agent.obsDim} / act ${agent.actDim}, ${envId} has ${obsDim} / ${space.actDim}`);
  }
  const prefix = datasetPrefix(envId);
  const target = mediumTargetReturn(envId, settings.medium);
  say(`medium target: ${target.rule}`);
  if (online.replayCapacity < online.envSteps) {
    say(`note: the replay store holds ${online.replayCapacity} rows, fewer than the ${online.envSteps} env steps; medium-replay still keeps every transition up to the medium point`);
  }
  const updatesAt = (envSteps: number) => updatesDue(online, envSteps);

  // ---- training, watched through the hooks
  const log = new TransitionLog(agent.obsDim, agent.actDim);
  let medium: Snapshot | null = null;
  let best: Snapshot | null = null;
  let bestOverall: Snapshot | null = null;
  const expertChoice = settings.expert ?? 'final';
  const snapshot = async (r: { envSteps: number; mean: number; std: number }, updates: number): Promise<Snapshot> => ({
    envSteps: r.envSteps,
    updates,
    evalMean: r.mean,
    evalStd: r.std,
    actor: await saveModule(agent.actor, { env: envId, algorithm: settings.algorithm, env_steps: String(r.envSteps), eval_return: String(r.mean) }),
    agent: await encodeCheckpoint({ step: updates, modules: agent.parts.modules, extra: { envSteps: r.envSteps, evalMean: r.mean } }),
  });
  const hooks: OnlineHooks = {
    onTransitions: (t) => log.append(t as TransitionChunk),
    onEvaluation: async (r) => {
      let taken: Snapshot | null = null;
      const take = async () => (taken ??= await snapshot(r, updatesAt(r.envSteps)));
      if (!medium) {
        if (r.mean >= target.value) {
          const below: Snapshot | null = best;
          const useBelow = (settings.mediumRule ?? 'first') === 'closest' && below !== null && target.value - below.evalMean < r.mean - target.value;
          medium = useBelow ? below : await take();
          best = null;
          say(`medium policy: evaluation return ${formatFixed(medium.evalMean, 1)} at ${medium.envSteps} env steps (target ${formatFixed(target.value, 1)}` +
            `${useBelow ? `; closer than ${formatFixed(r.mean, 1)} at ${r.envSteps}` : ''})`);
        } else if (best === null || r.mean > best.evalMean) {
          best = await take();
        }
      }
      if (expertChoice === 'best' && (bestOverall === null || r.mean > bestOverall.evalMean)) bestOverall = await take();
    },
  };
  const train = opts.train ?? trainOnline;
  const training = await train(agent, online, ctx, { hooks, checkpoint: opts.checkpoint ?? join(dir, 'checkpoint.safetensors') });
  const trainMs = performance.now() - t0;
  if (log.size !== training.envSteps) {
    throw new Error(`runRecipe: the loop handed over ${log.size} transitions through onTransitions but reports ${training.envSteps} env steps (a resumed run cannot make a replay dataset)`);
  }
  const lastEval = training.evals.at(-1) ?? null;
  const final = await snapshot({ envSteps: training.envSteps, mean: lastEval?.mean ?? Number.NaN, std: lastEval?.std ?? Number.NaN }, training.updates);
  const reached = medium !== null;
  if (!medium) {
    medium = best ?? final;
    say(`warning: no evaluation reached the medium target (${formatFixed(target.value, 1)}); the medium policy is the best evaluation ` +
      `(return ${formatFixed(medium.evalMean, 1)} at ${medium.envSteps} env steps)`);
  }
  const mediumSnap: Snapshot = medium;
  const expertSnap: Snapshot = expertChoice === 'best' ? ((bestOverall as Snapshot | null) ?? final) : final;
  if (expertChoice === 'best') {
    say(`expert policy: the best evaluation, return ${formatFixed(expertSnap.evalMean, 1)} at ${expertSnap.envSteps} env steps (final: ${formatFixed(final.evalMean, 1)})`);
  }

  // ---- policy files
  const writeBytes = (file: string, bytes: Uint8Array) => writeFileSync(join(dir, file), bytes);
  const policyFiles = {
    medium: `${prefix}-medium-policy.safetensors`,
    mediumAgent: `${prefix}-medium-agent.safetensors`,
    expert: `${prefix}-expert-policy.safetensors`,
    expertAgent: `${prefix}-expert-agent.safetensors`,
    finalAgent: expertSnap === final ? `${prefix}-expert-agent.safetensors` : `${prefix}-final-agent.safetensors`,
  };
  writeBytes(policyFiles.medium, mediumSnap.actor);
  writeBytes(policyFiles.mediumAgent, mediumSnap.agent);
  writeBytes(policyFiles.expert, expertSnap.actor);
  writeBytes(policyFiles.expertAgent, expertSnap.agent);
  if (expertSnap !== final) writeBytes(policyFiles.finalAgent, final.agent);
  const load = (snap: Snapshot, agentFile: string) => {
    if (restore === 'agent') loadCheckpoint(join(dir, agentFile), { modules: agent.parts.modules });
    else loadModule(agent.actor, snap.actor);
  };

  // ---- datasets
  const t1 = performance.now();
  const files: DatasetSummary[] = [];
  const kept: Partial<Record<DatasetKind, D4RLData>> = {};
  const common = (extra: Record<string, string | number | boolean>) => ({
    algorithm: settings.algorithm, created_by: RECIPE_CREATED_BY, env_id: envId, recipe_seed: settings.seed,
    medium_target_return: target.value, medium_reached: reached, max_episode_steps: maxEpisodeSteps, ...extra,
  });
  const snapMeta = (snap: Snapshot, policyFile: string) => ({
    iteration: snap.updates, env_steps: snap.envSteps, eval_return_mean: snap.evalMean, policy_file: policyFile, explore,
  });
  const write = async (kind: DatasetKind, data: D4RLData, policyFile: string | null, completeReturns?: number[]) => {
    const name = `${prefix}-${kind}`;
    const file = `${name}.hdf5`;
    const path = join(dir, file);
    await writeD4RL(path, data, { compression });
    const bytes = readFileSync(path);
    const entry: DatasetSummary = { kind, name, file, rows: data.size, ...datasetStats(data, envId, completeReturns), policyFile, bytes: bytes.length, sha256: sha256(bytes) };
    files.push(entry);
    if (opts.keepData) kept[kind] = data;
    say(`wrote ${path}: ${entry.rows} rows, ${entry.episodes} episodes, return ${formatFixed(entry.returnMean, 1)}` +
      (entry.normalizedScore === null ? '' : `, normalised score ${formatFixed(entry.normalizedScore, 1)}`));
    return data;
  };
  const makeEnvFn = (): Promise<Env> => makeEnv(envId, { seed: settings.seed });
  const progress = (label: string) => {
    let last = 0;
    return ({ rows }: { rows: number }) => {
      const now = performance.now();
      if (now - last > 2000) {
        last = now;
        say(`  ${label}: ${Math.min(rows, settings.size)}/${settings.size} rows`);
      }
    };
  };
  const collectWith = (label: string, policy: BatchPolicy, seedOffset: number, policyName: string, metadata: Record<string, string | number | boolean>) =>
    collect(policy, makeEnvFn, {
      steps: settings.size, seed: settings.seed + seedOffset, numEnvs: collectEnvs, policyName, metadata, onEpisode: progress(label),
    });

  say(`collecting ${settings.size} rows with uniform random actions`);
  const random = await collectWith('random', randomPolicy(space, settings.seed + 1_000_000), 1_000_000, 'random', common({}));
  let logProb = 0;
  for (let j = 0; j < space.actDim; j++) logProb -= Math.log(space.actionHigh[j]! - space.actionLow[j]!);
  random.infos = { ...random.infos, action_log_probs: { data: new Float32Array(random.size).fill(logProb), shape: [random.size] } };
  random.metadata = { ...random.metadata, policy: 'random' };
  await write('random', random, null);

  say(`collecting ${settings.size} rows with the ${expertChoice === 'best' ? 'best evaluated' : 'final'} policy`);
  load(expertSnap, policyFiles.expertAgent);
  const expert = await collectWith('expert', agentPolicy(agent, space.actionLow, space.actionHigh, explore), 3_000_000, 'expert',
    common({ ...snapMeta(expertSnap, policyFiles.expert), expert_policy: expertChoice }));
  say(`collecting ${settings.size} rows with the medium policy`);
  load(mediumSnap, policyFiles.mediumAgent);
  const mediumData = await collectWith('medium', agentPolicy(agent, space.actionLow, space.actionHigh, explore), 2_000_000, 'medium', common(snapMeta(mediumSnap, policyFiles.medium)));
  load(final, policyFiles.finalAgent);
  await write('medium', mediumData, policyFiles.medium);

  const replayRows = Math.min(mediumSnap.envSteps, log.size);
  // the loop hands over no simulator state: recover it by replaying the logged actions (checked row by row)
  let physics: PhysicsColumns | undefined;
  if (!log.columns(0).qpos) {
    const replayed = await replayPhysics(log, envId, online.seed, settings.fullReplay ? log.size : replayRows);
    if ('error' in replayed) say(`note: replay datasets written without infos/qpos, infos/qvel: ${replayed.error}`);
    else physics = replayed;
  }
  const replay = episodeRows(log, replayRows, physics);
  replay.data.metadata = common({
    policy: 'medium-replay', iteration: mediumSnap.updates, env_steps: replayRows, eval_return_mean: mediumSnap.evalMean,
    policy_file: policyFiles.medium, num_steps: replayRows, num_episodes: replay.completeReturns.length, episodes_cut: replay.cut,
    num_envs: online.numEnvs, warmup_steps: online.warmupSteps,
  });
  await write('medium-replay', replay.data, policyFiles.medium, replay.completeReturns);
  await write('expert', expert, policyFiles.expert);
  const mediumExpert = concatD4RL([mediumData, expert], common({
    policy: 'medium-expert', medium_rows: mediumData.size, expert_rows: expert.size, num_steps: mediumData.size + expert.size,
    medium_env_steps: mediumSnap.envSteps, expert_env_steps: expertSnap.envSteps, medium_policy_file: policyFiles.medium,
    expert_policy_file: policyFiles.expert, explore,
  }));
  await write('medium-expert', mediumExpert, null);
  if (settings.fullReplay) {
    const full = episodeRows(log, log.size, physics);
    full.data.metadata = common({
      policy: 'full-replay', iteration: training.updates, env_steps: log.size, num_steps: log.size,
      num_episodes: full.completeReturns.length, episodes_cut: full.cut, num_envs: online.numEnvs, warmup_steps: online.warmupSteps,
    });
    await write('full-replay', full.data, policyFiles.expert, full.completeReturns);
  }
  const collectMs = performance.now() - t1;

  // ---- manifest and summary
  const summaryTable = formatSummaryTable(files);
  const result: RecipeResult = {
    dir,
    files,
    medium: {
      reached, targetReturn: target.value, rule: target.rule, envSteps: mediumSnap.envSteps, updates: mediumSnap.updates,
      evalMean: mediumSnap.evalMean, replayRows,
    },
    final: { envSteps: training.envSteps, updates: training.updates, evalMean: lastEval?.mean ?? null },
    expert: { source: expertChoice, envSteps: expertSnap.envSteps, updates: expertSnap.updates, evalMean: expertSnap.evalMean },
    training,
    timings: { trainMs, collectMs, totalMs: performance.now() - t0 },
    manifest: join(dir, 'recipe.json'),
    summaryTable,
    ...(opts.keepData ? { data: kept } : {}),
  };
  const manifest = {
    created_by: RECIPE_CREATED_BY,
    env: envId,
    algorithm: settings.algorithm,
    settings: { ...settings, explore, restore, compression, collectEnvs, expert: expertChoice, mediumRule: settings.mediumRule ?? 'first' },
    online,
    ...(opts.manifestExtra ? { config: opts.manifestExtra } : {}),
    medium: result.medium,
    final: result.final,
    expert: result.expert,
    evals: training.evals,
    policies: policyFiles,
    files,
    timings: result.timings,
  };
  writeFileSync(result.manifest, `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(join(dir, 'summary.md'), `# ${prefix} datasets (${settings.algorithm})\n\n${summaryTable}\n\nMedium: ${target.rule}; ` +
    `${reached ? 'reached' : 'NOT reached (best evaluation used)'} at ${mediumSnap.envSteps} env steps (return ${formatFixed(mediumSnap.evalMean, 1)}). ` +
    `Final: ${training.envSteps} env steps, ${training.updates} updates.\n`);
  return result;
}

// ---------------------------------------------------------------------------------------------------------
// Command line

type AnyOnlineCommand = OnlineCommand<OnlineCommandConfig, OptionSpecs>;

/** The online commands the recipe can train, by --agent value. */
const AGENT_COMMANDS: Readonly<Record<string, AnyOnlineCommand>> = Object.freeze({
  sac: SAC_COMMAND as unknown as AnyOnlineCommand,
  sdac: SDAC_COMMAND as unknown as AnyOnlineCommand,
});

function agentCommand(name: string): AnyOnlineCommand {
  const cmd = AGENT_COMMANDS[name];
  if (!cmd) throw new CliError(`--agent must be one of ${Object.keys(AGENT_COMMANDS).join(', ')}; got '${name}'`);
  return cmd;
}

/** The --agent value of argv without parsing the rest (the agent's own options depend on it). */
function agentArg(argv: readonly string[]): string {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--agent') return argv[i + 1] ?? 'sac';
    if (a.startsWith('--agent=')) return a.slice('--agent='.length);
  }
  return 'sac';
}

const RECIPE_OPTIONS = {
  agent: { type: 'string', default: 'sac', choices: Object.keys(AGENT_COMMANDS), description: 'the online agent that is trained and generates the data; its own options (e.g. --hidden) follow its name in this list' },
  size: { type: 'integer', positive: true, default: 10_000, placeholder: 'n', description: 'rows of the random, medium and expert datasets (D4RL: 1000000); medium-expert gets twice as many, medium-replay as many as were collected before the medium point' },
  'medium-score': { type: 'number', placeholder: 'x', description: `medium target as a D4RL normalised score: 0 = uniform random, 100 = the reference expert of datasets/presets.ts (default ${formatFixed(DEFAULT_MEDIUM_SCORE, 1)}, a third of the way)` },
  'medium-return': { type: 'number', placeholder: 'r', description: 'medium target as an evaluation return instead (for environments without reference returns)' },
  'medium-rule': { type: 'string', default: 'first', choices: ['first', 'closest'], description: 'which evaluation gives the medium policy: the first at or above the target, or whichever of it and the best one below the target is closer to the target (for returns that jump past the target between evaluations)' },
  collect: { type: 'string', default: 'stochastic', choices: ['stochastic', 'deterministic'], description: "policy used to collect medium and expert rows: the agent's behaviour policy (as D4RL) or its deterministic evaluation policy" },
  'collect-envs': { type: 'integer', positive: true, default: 16, placeholder: 'n', description: 'environment copies stepped together while collecting' },
  restore: { type: 'string', default: 'agent', choices: ['agent', 'actor'], description: "what a snapshot restores before collecting: every network of the agent (its action choice may use its critic) or the actor alone" },
  expert: { type: 'string', default: 'final', choices: ['final', 'best'], description: "policy of the expert rows: the final one (as D4RL) or the one of the best evaluation (for runs whose last evaluations fall back)" },
  'full-replay': { type: 'boolean', description: 'also write <env>-full-replay: every transition of the run' },
  compression: { type: 'integer', nonNegative: true, default: 4, placeholder: '0-9', description: 'gzip level of the HDF5 files' },
  out: { type: 'string', placeholder: 'dir', description: 'output folder (default runs/recipe-<env>-<agent>-<timestamp>)' },
} as const satisfies Record<string, OptionSpec>;

/** The medium point is only found at evaluations: without --eval-every the recipe evaluates at least this often per run. */
const RECIPE_EVALS_PER_RUN = 30;

/** Shared online options that make no sense for a recipe (it cannot resume: the replay log is not saved). */
const NOT_FOR_RECIPE = new Set(['resume', 'out']);

function recipeCliSpec(cmd: AnyOnlineCommand): CliSpec<OptionSpecs> {
  const shared = Object.fromEntries(Object.entries(ONLINE_CLI_OPTIONS).filter(([k]) => !NOT_FOR_RECIPE.has(k)));
  return {
    usage: 'node scripts/dataset-recipe.ts [--env ID] [--agent sac|sdac] [--size N] [--out DIR] [options]',
    description:
      "D4RL's dataset recipe with the project's online agents. Trains the agent online (the agent's presets and options " +
      'below), keeps its policy at the first evaluation whose mean return reaches the medium target and at the end, then ' +
      'writes D4RL-layout HDF5 files: <env>-random (uniform random actions), <env>-medium (the medium policy), ' +
      '<env>-medium-replay (every transition collected up to the medium point, regrouped into whole episodes; an episode ' +
      'cut there ends in a timeout), <env>-expert (the final policy) and <env>-medium-expert (medium then expert); ' +
      'infos/qpos and infos/qvel where the environment has them, metadata/algorithm, policy, iteration, env_steps, created_by.\n\n' +
      'Next to the files: the policies (<env>-medium-policy.safetensors and -expert-policy: the actor; -agent: every ' +
      'network), recipe.json (the settings, the medium point, every evaluation, every file with rows, episodes, return, ' +
      'normalised score and SHA-256), summary.md (the table printed at the end), log.jsonl and curves.svg. If no ' +
      'evaluation reaches the target, the best one is used and the summary says so; raise --steps or lower the target.\n\n' +
      `Agent options (${cmd.title}), after the recipe's own: see node algorithms/${cmd.name}.ts --help.`,
    options: {
      ...RECIPE_OPTIONS,
      ...shared,
      preset: { ...ONLINE_CLI_OPTIONS.preset, choices: cmd.presetNames },
      'eval-every': {
        ...ONLINE_CLI_OPTIONS['eval-every'],
        description: `transitions between evaluations (default: the preset's, but at least ${RECIPE_EVALS_PER_RUN} evaluations per run, since the medium policy is taken at an evaluation)`,
      },
      ...cmd.options,
    },
    examples: [
      'node scripts/dataset-recipe.ts --env pendulum --agent sac',
      'node scripts/dataset-recipe.ts --env pendulum --agent sac --size 2000 --preset quick --out runs/recipe-pendulum',
      'node scripts/dataset-recipe.ts --env hopper --agent sac --preset quick --steps 20000 --size 5000 --medium-score 20',
      'node scripts/dataset-recipe.ts --env pendulum --agent sdac --medium-return -600 --medium-rule closest',
    ],
  };
}

/** The recipe command; returns null after --help. */
export async function recipeMain(argv: string[] = process.argv.slice(2)): Promise<RecipeResult | null> {
  const cmd = agentCommand(agentArg(argv));
  const spec = recipeCliSpec(cmd);
  const args = parseCli(spec, argv) as Record<string, string | number | boolean | undefined> | null;
  if (!args) return null;
  if (args['medium-score'] !== undefined && args['medium-return'] !== undefined) throw new CliError('give --medium-score or --medium-return, not both');
  if ((args['compression'] as number) > 9) throw new CliError(`--compression must be 0-9, got ${args['compression']}`);
  const cfg = onlineConfigFromArgs(cmd, args as never);
  if (args['eval-every'] === undefined) {
    const dense = Math.max(1, Math.round(cfg.envSteps / RECIPE_EVALS_PER_RUN));
    cfg.evalEvery = cfg.evalEvery > 0 ? Math.min(cfg.evalEvery, dense) : dense;
  }
  const medium: MediumTarget = args['medium-return'] !== undefined
    ? { return: args['medium-return'] as number }
    : { score: (args['medium-score'] as number | undefined) ?? DEFAULT_MEDIUM_SCORE };
  const probe = await makeEnv(cfg.env).catch((err: unknown) => { throw new CliError(err instanceof Error ? err.message : String(err)); });
  const envId = probe.id;
  const dims = { obsDim: probe.obsDim, actDim: probe.actDim };
  probe.close();
  try {
    mediumTargetReturn(envId, medium);
  } catch (err) {
    throw new CliError(err instanceof Error ? err.message.replace(/^mediumTargetReturn: /, '') : String(err));
  }
  const settings: RecipeSettings = {
    size: args['size'] as number,
    algorithm: cmd.title,
    medium,
    mediumRule: args['medium-rule'] as 'first' | 'closest',
    explore: args['collect'] === 'stochastic',
    collectEnvs: args['collect-envs'] as number,
    seed: cfg.seed,
    compression: args['compression'] as number,
    fullReplay: args['full-replay'] === true,
    restore: args['restore'] as 'agent' | 'actor',
    expert: args['expert'] as 'final' | 'best',
  };
  const quiet = args['quiet'] === true;
  const dir = createRunDir(`recipe-${envKey(cfg.env)}-${cmd.name}`, { out: args['out'] as string | undefined });
  writeFileSync(join(dir, RUN_FILES.config), `${JSON.stringify({ agent: cmd.name, recipe: settings, online: cfg }, null, 2)}\n`);
  const rt = await openDevice(args['device'] as string, { tune: args['tune'] === true, log: tuningLog(quiet) });
  const say = (line: string) => { if (!quiet) process.stderr.write(`${line}\n`); };
  say(`recipe: ${cmd.title} on ${envId}, device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); outputs in ${dir}`);
  say(`recipe: training ${cfg.envSteps} env steps (${cmd.describe ? cmd.describe(cfg) : `preset ${cfg.preset}`}), then ${settings.size} rows per policy`);
  try {
    const log = new JsonlLog(join(dir, RUN_FILES.log));
    const ctx: RunContext = { cfg, log, stream: process.stderr, quiet, eager: args['eager'] === true };
    const agent = cmd.makeAgent(cfg, dims);
    let result: RecipeResult;
    try {
      result = await runRecipe(agent, cfg, settings, ctx, { dir, say, manifestExtra: { agent: cmd.name, preset: cfg.preset, online: cfg } });
    } finally {
      agent.dispose();
    }
    writePicture(join(dir, RUN_FILES.curves), onlineCurvesSvg(currentRecords(JsonlLog.read(log.path)), {}, { phase: 'online', policy: cmd.title }));
    const m = result.medium;
    console.log(`\n${cmd.title} recipe on ${envId}\n\n${result.summaryTable}\n`);
    console.log(`  medium policy      ${m.reached ? '' : 'NOT REACHED, best evaluation used: '}return ${formatFixed(m.evalMean, 1)} at ${m.envSteps} env steps, ${m.updates} updates; target ${m.rule}`);
    console.log(`  final policy       return ${result.final.evalMean === null ? '-' : formatFixed(result.final.evalMean, 1)} at ${result.final.envSteps} env steps, ${result.final.updates} updates`);
    if (result.expert.source === 'best') console.log(`  expert policy      best evaluation: return ${formatFixed(result.expert.evalMean, 1)} at ${result.expert.envSteps} env steps`);
    console.log(`  wall time          training ${formatDuration(result.timings.trainMs)}, collecting and writing ${formatDuration(result.timings.collectMs)}; total ${formatDuration(result.timings.totalMs)}`);
    console.log(`  outputs            ${dir} (manifest ${result.manifest})`);
    return result;
  } finally {
    disposeEngine();
  }
}

if (isMainModule(import.meta.url)) await runMain('recipe', async () => void (await recipeMain()));

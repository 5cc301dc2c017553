// D4RL's dataset recipe with the project's own online agents: train an agent online, keep its policy at the
// first evaluation that reaches a "medium" return and at the end, and write the five locomotion datasets.
//
//   <env>-random         N rows of uniform random actions
//   <env>-medium         N rows of the medium snapshot's policy
//   <env>-medium-replay  every transition the agent collected until the medium snapshot (its replay buffer),
//                        regrouped into whole episodes; an episode cut by the snapshot ends in a timeout
//   <env>-expert         N rows of the final policy
//   <env>-medium-expert  medium followed by expert (2N rows)
//   <env>-full-replay    (optional) every transition of the whole run, regrouped the same way
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
// Run as a command (`node datasets/recipe.ts --help`).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { saveModule, loadModule } from '../engine/safetensors.ts';
import { encodeCheckpoint, loadCheckpoint } from '../algorithms/common/run.ts';
import type { RunContext } from '../algorithms/common/offline.ts';
import { agentPolicy, trainOnline, updatesDue, type OnlineAgent, type OnlineConfig, type OnlineHooks, type OnlineResult } from '../algorithms/common/online.ts';
import { randomPolicy } from '../envs/controllers.ts';
import type { Env } from '../envs/core.ts';
import { meanStd, type BatchPolicy } from '../envs/evaluate.ts';
import { makeEnv } from '../envs/registry.ts';
import { collect, episodeReturns } from './collect.ts';
import { writeD4RL, type D4RLData } from './d4rl.ts';
import { REFERENCE_SCORES, normalizedScore, referenceFamily, type ReferenceScore } from './presets.ts';
import { TransitionLog, episodeRows, type TransitionChunk } from './transition-log.ts';

/** Recorded with every dataset as metadata/created_by. */
export const RECIPE_CREATED_BY = 'webdiffuser datasets/recipe.ts';

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
  return { value, rule: `normalised score >= ${formatFixed(target.score, 2)} (return >= ${formatFixed(value, 2)}; random ${ref.min}, expert ${ref.max}, ${ref.source})` };
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

// ---------------------------------------------------------------------------------------------------------
// The recipe

export interface RecipeSettings {
  /** Rows of the random, medium and expert datasets (medium-expert gets twice as many). */
  size: number;
  /** Name recorded as metadata/algorithm (D4RL: 'SAC'). */
  algorithm: string;
  medium: MediumTarget;
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
  /** Complete episodes (ended by a terminal or timeout that the environment produced). */
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
  /** The online loop (default: trainOnline of algorithms/common/online.ts). */
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

/** Mean return and normalised score of a dataset's complete episodes. */
export function datasetStats(data: D4RLData, env: string): { episodes: number; returnMean: number; returnStd: number; normalizedScore: number | null } {
  const returns = episodeReturns(data);
  const { mean, std } = meanStd(returns);
  const ref = referenceFor(env);
  return { episodes: returns.length, returnMean: mean, returnStd: std, normalizedScore: ref && returns.length > 0 ? normalizedScore(ref, mean) : null };
}

/** The per-file table printed at the end of a recipe. */
export function formatSummaryTable(files: readonly DatasetSummary[]): string {
  const head = ['dataset', 'rows', 'episodes', 'return mean', 'return std', 'norm. score'];
  const rows = files.map((f) => [f.name, String(f.rows), String(f.episodes), formatFixed(f.returnMean, 1), formatFixed(f.returnStd, 1),
    f.normalizedScore === null ? '-' : formatFixed(f.normalizedScore, 1)]);
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
  const updatesAt = (envSteps: number) => updatesDue(online, envSteps);

  // ---- training, watched through the hooks
  const log = new TransitionLog(agent.obsDim, agent.actDim);
  let medium: Snapshot | null = null;
  let best: Snapshot | null = null;
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
      if (medium) return;
      if (r.mean >= target.value) {
        medium = await snapshot(r, updatesAt(r.envSteps));
        best = null;
        say(`medium policy: evaluation return ${formatFixed(r.mean, 1)} at ${r.envSteps} env steps (target ${formatFixed(target.value, 1)})`);
      } else if (best === null || r.mean > best.evalMean) {
        best = await snapshot(r, updatesAt(r.envSteps));
      }
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

  // ---- policy files
  const writeBytes = (file: string, bytes: Uint8Array) => writeFileSync(join(dir, file), bytes);
  const policyFiles = {
    medium: `${prefix}-medium-policy.safetensors`,
    mediumAgent: `${prefix}-medium-agent.safetensors`,
    expert: `${prefix}-expert-policy.safetensors`,
    expertAgent: `${prefix}-expert-agent.safetensors`,
  };
  writeBytes(policyFiles.medium, mediumSnap.actor);
  writeBytes(policyFiles.mediumAgent, mediumSnap.agent);
  writeBytes(policyFiles.expert, final.actor);
  writeBytes(policyFiles.expertAgent, final.agent);
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
  const write = async (kind: DatasetKind, data: D4RLData, policyFile: string | null) => {
    const name = `${prefix}-${kind}`;
    const file = `${name}.hdf5`;
    const path = join(dir, file);
    await writeD4RL(path, data, { compression });
    const bytes = readFileSync(path);
    const entry: DatasetSummary = { kind, name, file, rows: data.size, ...datasetStats(data, envId), policyFile, bytes: bytes.length, sha256: sha256(bytes) };
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

  say(`collecting ${settings.size} rows with the final policy`);
  load(final, policyFiles.expertAgent);
  const expert = await collectWith('expert', agentPolicy(agent, space.actionLow, space.actionHigh, explore), 3_000_000, 'expert', common(snapMeta(final, policyFiles.expert)));
  say(`collecting ${settings.size} rows with the medium policy`);
  load(mediumSnap, policyFiles.mediumAgent);
  const mediumData = await collectWith('medium', agentPolicy(agent, space.actionLow, space.actionHigh, explore), 2_000_000, 'medium', common(snapMeta(mediumSnap, policyFiles.medium)));
  load(final, policyFiles.expertAgent);
  await write('medium', mediumData, policyFiles.medium);

  const replayRows = Math.min(mediumSnap.envSteps, log.size);
  const replay = episodeRows(log, replayRows);
  replay.data.metadata = common({
    policy: 'medium-replay', iteration: mediumSnap.updates, env_steps: replayRows, eval_return_mean: mediumSnap.evalMean,
    policy_file: policyFiles.medium, num_steps: replayRows, num_episodes: replay.completeReturns.length, episodes_cut: replay.cut,
    num_envs: online.numEnvs, warmup_steps: online.warmupSteps,
  });
  await write('medium-replay', replay.data, policyFiles.medium);
  await write('expert', expert, policyFiles.expert);
  const mediumExpert = concatD4RL([mediumData, expert], common({
    policy: 'medium-expert', medium_rows: mediumData.size, expert_rows: expert.size, num_steps: mediumData.size + expert.size,
    medium_env_steps: mediumSnap.envSteps, expert_env_steps: final.envSteps, medium_policy_file: policyFiles.medium,
    expert_policy_file: policyFiles.expert, explore,
  }));
  await write('medium-expert', mediumExpert, null);
  if (settings.fullReplay) {
    const full = episodeRows(log);
    full.data.metadata = common({
      policy: 'full-replay', iteration: training.updates, env_steps: log.size, num_steps: log.size,
      num_episodes: full.completeReturns.length, episodes_cut: full.cut, num_envs: online.numEnvs, warmup_steps: online.warmupSteps,
    });
    await write('full-replay', full.data, policyFiles.expert);
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
    settings: { ...settings, explore, restore, compression, collectEnvs },
    online,
    ...(opts.manifestExtra ? { config: opts.manifestExtra } : {}),
    medium: result.medium,
    final: result.final,
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

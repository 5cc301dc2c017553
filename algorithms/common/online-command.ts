// An online algorithm as a command: the options every online command shares, the run (reference returns, the
// loop, summary.json and curves.svg) and the printed summary.
import { join } from 'node:path';
import { envIds, makeEnv } from '../../envs/registry.ts';
import { evaluate } from '../../envs/evaluate.ts';
import { pendulumSwingUp, randomPolicy } from '../../envs/controllers.ts';
import { CliError, assignDefined, isMainModule, runMain, userError, type CliSpec, type CliValues, type OptionSpec, type OptionSpecs } from './cli.ts';
import { runCommand, runOptions, type RunSettings, type TrainingCommand } from './command.ts';
import { onlineCurvesSvg } from './curves.ts';
import { writePicture } from './picture.ts';
import { currentRecords, JsonlLog, formatDuration, say } from './monitor.ts';
import { DEFAULT_EVAL_SEED, checkOnlineConfig, trainOnline, type OnlineAgent, type OnlineConfig, type OnlineHooks, type OnlineResult, type OnlineRunOptions } from './online-loop.ts';
import type { RunContext } from './phase.ts';
import { RUN_FILES, removeStaleTemps, writeFileAtomic } from './run-files.ts';

/**
 * Returns of reference policies on the evaluation episodes: uniform random actions always, and the scripted
 * swing-up controller on Pendulum (the "near expert" bar).
 */
export async function referenceReturns(env: string, episodes: number, evalSeed = DEFAULT_EVAL_SEED): Promise<Record<string, number>> {
  const probe = await makeEnv(env);
  const space = { actDim: probe.actDim, actionLow: probe.actionLow, actionHigh: probe.actionHigh };
  const id = probe.id;
  probe.close();
  const opts = { episodes, numEnvs: Math.min(episodes, 10), seed: evalSeed };
  const out: Record<string, number> = { 'uniform random': (await evaluate(randomPolicy(space, evalSeed), () => makeEnv(env), opts)).mean };
  if (id.startsWith('Pendulum')) out['scripted swing-up'] = (await evaluate(pendulumSwingUp(), () => makeEnv(env), opts)).mean;
  return out;
}


// =========================================================================================================
// Command line shared by the online algorithms

/** Options every online command has (the algorithm adds its own). */
export const ONLINE_CLI_OPTIONS = {
  env: { type: 'string', default: 'pendulum', placeholder: 'id', description: 'environment: pendulum, hopper, halfcheetah, walker2d (or a Gymnasium id such as Hopper-v4)' },
  preset: { type: 'string', default: 'default', placeholder: 'name', description: "settings preset (see above): 'default' is the algorithm's paper settings for the environment (short on Pendulum), 'quick' small networks and a short run" },
  seed: { type: 'integer', nonNegative: true, description: 'seed of the networks, random streams and environments (default 0)' },
  steps: { type: 'integer', positive: true, placeholder: 'n', description: "environment transitions in total, all copies together (default: the preset's)" },
  'num-envs': { type: 'integer', positive: true, placeholder: 'n', description: 'environment copies stepped together' },
  'warmup-steps': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'transitions collected with uniform random actions before any update' },
  'updates-per-step': { type: 'number', nonNegative: true, placeholder: 'x', description: 'gradient updates per collected transition' },
  'replay-capacity': { type: 'integer', positive: true, placeholder: 'n', description: 'replay store rows (oldest overwritten when full)' },
  'eval-every': { type: 'integer', nonNegative: true, placeholder: 'n', description: 'transitions between evaluations (0: only at the end)' },
  'eval-episodes': { type: 'integer', positive: true, placeholder: 'n', description: 'episodes per evaluation (deterministic policy, fixed seeds)' },
  'log-every': { type: 'integer', positive: true, placeholder: 'n', description: 'transitions between log records and NaN checks' },
  'checkpoint-every': { type: 'integer', positive: true, placeholder: 'n', description: 'transitions between checkpoints' },
  ...runOptions('<algorithm>-<env>-<preset>'),
} as const satisfies Record<string, OptionSpec>;

/** What a configuration of an online command holds besides the loop's settings. */
export interface OnlineCommandConfig extends OnlineConfig {
  algorithm: string;
  preset: string;
}

/**
 * The loop settings of a paper's MuJoCo run, as SAC's and SDAC's papers ran them: 1M env steps into a 1M-row
 * replay store, 10 evaluation episodes, a log record every 1000 env steps and a checkpoint every 10k; the
 * algorithm gives its vector-env count, warm-up, update rate and evaluation interval.
 */
export function paperMujocoRun(
  algorithm: string,
  env: string,
  own: Pick<OnlineConfig, 'numEnvs' | 'warmupSteps' | 'updatesPerStep' | 'evalEvery'>,
): OnlineCommandConfig {
  return {
    algorithm, preset: 'default', env, seed: 0, envSteps: 1_000_000, replayCapacity: 1_000_000,
    evalEpisodes: 10, logEvery: 1000, checkpointEvery: 10_000, ...own,
  };
}

export type OnlineCliValues = NonNullable<CliValues<typeof ONLINE_CLI_OPTIONS>>;

/** An online algorithm as a command: what runOnlineCommand needs to know about it. */
export interface OnlineCommand<C extends OnlineCommandConfig, S extends OptionSpecs> {
  /** File stem and run-directory prefix, e.g. 'sac' (node algorithms/sac.ts). */
  name: string;
  /** Display name, e.g. 'SAC'. */
  title: string;
  /** --help paragraphs (what the algorithm does, what the presets are). */
  description: string;
  presetNames: readonly string[];
  /** The configuration of a preset for an environment (as typed on the command line); CliError when unknown. */
  preset(env: string, preset: string): C;
  /** The algorithm's own options, listed after the shared ones. */
  options: S;
  /** Writes the algorithm's options that were given into cfg (the shared ones are applied already). */
  applyOptions(cfg: C, args: CliValues<S>): void;
  makeAgent(cfg: C, dims: { obsDim: number; actDim: number }): OnlineAgent;
  examples?: string[];
  /** One line describing the agent's settings for the start of the run. */
  describe?(cfg: C): string;
}

/** The --help and parsing spec of an online command: the shared options, then the algorithm's. */
export function onlineCliSpec<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>): CliSpec<typeof ONLINE_CLI_OPTIONS & S> {
  const options = {
    ...ONLINE_CLI_OPTIONS,
    preset: { ...ONLINE_CLI_OPTIONS.preset, choices: cmd.presetNames },
    ...cmd.options,
  } as unknown as typeof ONLINE_CLI_OPTIONS & S;
  return {
    usage: `node algorithms/${cmd.name}.ts [options]`,
    description:
      `${cmd.description}\n\n` +
      'Trains online in the environment: uniform random actions for the warm-up, then the behaviour policy, every ' +
      'transition in a GPU replay store, gradient updates recorded once and replayed; evaluates the deterministic ' +
      'policy periodically on fixed episodes. Progress goes to stderr; outputs go to ' +
      `runs/${cmd.name}-<env>-<preset>-<timestamp>/: config.json, log.jsonl, checkpoint.safetensors (networks, optimisers, ` +
      'replay store and loop counters; --resume continues from it), curves.svg (learning curve and losses) and summary.json. ' +
      'Ctrl-C stops at a checkpoint.',
    options,
    examples: cmd.examples,
  };
}

/** The configuration a command line asks for: the preset, then the shared options, then the algorithm's. */
export function onlineConfigFromArgs<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>, args: OnlineCliValues & CliValues<S>): C {
  if (!envIds().includes(args.env)) throw new CliError(`--env: unknown environment '${args.env}'; known: ${envIds().join(', ')}`);
  const cfg = cmd.preset(args.env, args.preset);
  assignDefined(cfg as OnlineConfig, {
    seed: args.seed,
    envSteps: args.steps,
    numEnvs: args['num-envs'],
    warmupSteps: args['warmup-steps'],
    updatesPerStep: args['updates-per-step'],
    replayCapacity: args['replay-capacity'],
    evalEvery: args['eval-every'],
    evalEpisodes: args['eval-episodes'],
    logEvery: args['log-every'],
    checkpointEvery: args['checkpoint-every'],
  });
  cmd.applyOptions(cfg, args);
  checkOnlineConfig(cfg);
  return cfg;
}

export interface OnlineSummary {
  algorithm: string;
  env: string;
  preset: string;
  envSteps: number;
  updates: number;
  /** The last evaluation (the end of training). */
  final: { mean: number; std: number; episodes: number } | null;
  evals: OnlineResult['evals'];
  /** Reference returns on the same evaluation episodes. */
  references: Record<string, number>;
  seconds: { total: number; training: number; evaluation: number };
  /** Over the training time of every session (evaluations excluded). */
  envStepsPerSecond: number;
  updatesPerSecond: number;
  dir: string;
}

export interface OnlineRunSettings extends RunSettings {
  stream?: RunContext['stream'];
  hooks?: OnlineHooks;
  stopWhen?: OnlineRunOptions['stopWhen'];
}

/** Trains an online command's agent into `dir` (log.jsonl, checkpoint, curves.svg, summary.json). */
export async function runOnline<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>, cfg: C, run: OnlineRunSettings): Promise<OnlineSummary> {
  const dir = run.dir;
  removeStaleTemps(dir);
  const log = new JsonlLog(join(dir, RUN_FILES.log));
  const ctx: RunContext = { cfg, log, stream: run.stream, quiet: run.quiet, stopRequested: run.stopRequested, eager: run.eager };
  const probe = await makeEnv(cfg.env).catch((err: unknown) => {
    throw userError(err instanceof Error ? err.message : String(err));
  });
  const dims = { obsDim: probe.obsDim, actDim: probe.actDim };
  const envId = probe.id;
  probe.close();
  const references = await referenceReturns(cfg.env, cfg.evalEpisodes, cfg.evalSeed);
  say(run, `${cmd.title} on ${envId}: ${cfg.envSteps} env steps in ${cfg.numEnvs} cop${cfg.numEnvs > 1 ? 'ies' : 'y'}, ${cfg.warmupSteps} random warm-up, ` +
    `${cfg.updatesPerStep} update${cfg.updatesPerStep === 1 ? '' : 's'} per step${cmd.describe ? `; ${cmd.describe(cfg)}` : ''}`);
  say(run, `reference returns: ${Object.entries(references).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  const agent = cmd.makeAgent(cfg, dims);
  let result: OnlineResult;
  try {
    result = await trainOnline(agent, cfg, ctx, { hooks: run.hooks, checkpoint: join(dir, 'checkpoint.safetensors'), resume: run.resume, phase: cmd.name, stopWhen: run.stopWhen });
  } finally {
    agent.dispose();
  }
  const lastEval = result.evals[result.evals.length - 1];
  // times and rates over every session of the run
  const records = currentRecords(JsonlLog.read(log.path));
  const sessions = records.filter((r) => r['phase'] === 'session') as { seconds: Record<string, number>; envSteps: number; updates: number }[];
  const total = (k: string) => sessions.reduce((acc, x) => acc + (x.seconds[k] ?? 0), 0);
  const trainingSeconds = Math.max(1e-3, total('training'));
  const summary: OnlineSummary = {
    algorithm: cmd.title,
    env: envId,
    preset: cfg.preset,
    envSteps: result.envSteps,
    updates: result.updates,
    final: lastEval ? { mean: lastEval.mean, std: lastEval.std, episodes: result.lastReturns.length } : null,
    evals: result.evals,
    references,
    seconds: { total: total('total'), training: total('training'), evaluation: total('evaluation') },
    envStepsPerSecond: sessions.reduce((acc, x) => acc + x.envSteps, 0) / trainingSeconds,
    updatesPerSecond: sessions.reduce((acc, x) => acc + x.updates, 0) / trainingSeconds,
    dir,
  };
  log.write({ phase: 'summary', ...summary });
  writeFileAtomic(join(dir, RUN_FILES.summary), JSON.stringify(summary, null, 2));
  writePicture(join(dir, RUN_FILES.curves), onlineCurvesSvg(records, references, { phase: cmd.name, policy: cmd.title }));
  return summary;
}

export function printOnlineSummary(s: OnlineSummary): void {
  const line = (label: string, v: string) => console.log(`  ${label.padEnd(26)}${v}`);
  console.log(`\n${s.algorithm} on ${s.env} (preset ${s.preset})`);
  if (s.final) line('final evaluation return', `${s.final.mean.toFixed(1)} +- ${s.final.std.toFixed(1)}  (${s.final.episodes} episodes)`);
  for (const [k, v] of Object.entries(s.references)) line(k, v.toFixed(1));
  if (s.evals.length > 1) line('learning curve', s.evals.map((e) => `${e.envSteps}: ${e.mean.toFixed(0)}`).join(', '));
  line('env steps, updates', `${s.envSteps}, ${s.updates}`);
  line('rate (training time)', `${s.envStepsPerSecond.toFixed(1)} env steps/s, ${s.updatesPerSecond.toFixed(1)} updates/s`);
  line('wall time', `training ${formatDuration(s.seconds.training * 1000)}, evaluation ${formatDuration(s.seconds.evaluation * 1000)}; total ${formatDuration(s.seconds.total * 1000)}`);
  line('outputs', s.dir);
}

/** An online algorithm as a training command. */
export function onlineCommand<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>): TrainingCommand<typeof ONLINE_CLI_OPTIONS & S, C, OnlineSummary> {
  return {
    name: cmd.name,
    spec: onlineCliSpec(cmd),
    config: (args) => {
      const cfg = onlineConfigFromArgs(cmd, args as OnlineCliValues & CliValues<S>);
      return { cfg, name: `${cmd.name}-${envKey(cfg.env)}-${cfg.preset}` };
    },
    title: () => cmd.title,
    template: (cfg) => cmd.preset(cfg.env, cfg.preset),
    train: (cfg, run) => runOnline(cmd, cfg, run),
    print: (s) => printOnlineSummary(s),
  };
}

/** The whole command (null after --help). */
export function runOnlineCommand<C extends OnlineCommandConfig, S extends OptionSpecs>(cmd: OnlineCommand<C, S>, argv: string[] = process.argv.slice(2)): Promise<OnlineSummary | null> {
  return runCommand(onlineCommand(cmd), argv);
}

/** 'Hopper-v4' -> 'hopper', 'pendulum' -> 'pendulum': the key presets are looked up by. */
export function envKey(env: string): string {
  return env.toLowerCase().replace(/-v\d+$/, '');
}

/** Runs an online command when its file is the script Node started (the last line of algorithms/<name>.ts). */
export async function onlineCommandMain<C extends OnlineCommandConfig, S extends OptionSpecs>(moduleUrl: string, cmd: OnlineCommand<C, S>): Promise<void> {
  if (isMainModule(moduleUrl)) await runMain(cmd.name, async () => void (await runOnlineCommand(cmd)));
}


// What every training command does around its training: the run directory (a fresh one holding config.json,
// or --resume's with its saved config), the WebGPU device, Ctrl-C that stops at a checkpoint, the summary.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dispose as disposeEngine, init, type Runtime } from '../../engine/runtime.ts';
import { CliError, parseCli, userError, type CliSpec, type CliValues, type OptionSpecs } from './cli.ts';
import { PhaseInterrupted } from './phase.ts';
import { RUN_FILES, createRunDir, holdsOnlyConfig, lockRunDir } from './run-files.ts';
import { prepareMatmulTuning } from './tuning-cache.ts';

/**
 * The configuration and run directory of a command: with --resume the saved config.json of that directory
 * (training options on the command line are refused), else a fresh directory holding `fresh()`'s config. The
 * directory is locked for this process before anything in it is read or written (`release` frees it).
 */
export function openRun<C>(
  args: { resume?: string; out?: string },
  argv: string[],
  trainingOptions: readonly string[],
  fresh: () => { cfg: C; name: string },
): { cfg: C; dir: string; resumed: boolean; release: () => void } {
  if (args.resume !== undefined) {
    const given = trainingOptions.filter((k) => argv.some((a) => a === `--${k}` || a.startsWith(`--${k}=`)));
    if (given.length) throw new CliError(`--resume continues a run with its saved config.json; drop ${given.map((k) => `--${k}`).join(', ')}`);
    const configPath = join(args.resume, RUN_FILES.config);
    if (!existsSync(configPath)) throw new CliError(`--resume: ${configPath} not found`);
    const release = lockRunDir(args.resume);
    let cfg: C;
    try {
      cfg = JSON.parse(readFileSync(configPath, 'utf8')) as C;
      if (cfg === null || typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('not a configuration object');
    } catch (err) {
      release();
      throw userError(`--resume: ${configPath} is not a readable run configuration (${err instanceof Error ? err.message : String(err)})`);
    }
    return { cfg, dir: args.resume, resumed: true, release };
  }
  const { cfg, name } = fresh();
  const dir = createRunDir(name, { out: args.out });
  const release = lockRunDir(dir);
  writeFileSync(join(dir, RUN_FILES.config), `${JSON.stringify(cfg, null, 2)}\n`);
  return { cfg, dir, resumed: false, release };
}

/** Options every training command shares for how the engine runs (not part of a run's configuration). */
export const ENGINE_CLI_OPTIONS = {
  eager: { type: 'boolean', description: 'run every training step through autograd instead of replaying the recorded step (slower; for debugging)' },
  tune: { type: 'boolean', description: 'time matrix-product kernels for shapes not yet in the tuning cache (about 2 s) before training; cached results are always used' },
} as const;

/** Where a training command reports tuning progress: stderr unless quiet. */
export function tuningLog(quiet: boolean | undefined): ((line: string) => void) | undefined {
  return quiet ? undefined : (line) => process.stderr.write(`${line}\n`);
}

/**
 * Starts the engine on the named adapter ('auto': the default one) and installs the matrix-product tuning
 * cached for it by earlier runs (bench/tune.ts --rl --save, or --tune). With `tune`, shape classes still
 * missing are timed within a small budget first and the cache file is updated.
 */
export async function openDevice(device: string, opts: { tune?: boolean; log?: (line: string) => void } = {}): Promise<Runtime> {
  let rt: Runtime;
  try {
    rt = await init(device === 'auto' ? {} : { dawnFlags: [`adapter=${device}`] });
  } catch (err) {
    throw userError(`no WebGPU device: ${err instanceof Error ? err.message : String(err)}`);
  }
  await prepareMatmulTuning({ budgetMs: opts.tune ? 2000 : 0, log: opts.log });
  return rt;
}

/**
 * Runs `fn` with a stop flag the first Ctrl-C raises (training stops at the next step with a checkpoint); a
 * second Ctrl-C exits at once. A PhaseInterrupted error gets the command that continues the run appended.
 */
export async function interruptible<T>(dir: string, resumeCommand: string, fn: (stopRequested: () => boolean) => Promise<T>): Promise<T> {
  let stop = false;
  const onInterrupt = () => {
    if (stop) process.exit(130);
    stop = true;
    process.stderr.write(`\nstopping after this step (Ctrl-C again to quit at once); resume with --resume ${dir}\n`);
  };
  process.on('SIGINT', onInterrupt);
  try {
    return await fn(() => stop);
  } catch (err) {
    if (err instanceof PhaseInterrupted) {
      (err as { message: string }).message += `; continue with: ${resumeCommand} --resume ${dir}`;
      process.exitCode = 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onInterrupt);
  }
}

/**
 * Checks a resumed run's configuration against its preset: every setting the preset has must be there with a
 * value of the same kind, so an edited or damaged config.json fails here, naming the file, and not deep in
 * training. Settings the preset lacks (optional ones) are left to the command.
 */
export function checkConfig<C>(path: string, cfg: C, cmd: { template(cfg: C): C }): void {
  let template: C;
  try {
    template = cmd.template(cfg);
  } catch (err) {
    throw userError(`--resume: ${path}: ${err instanceof Error ? err.message : String(err)}`);
  }
  const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? `array of ${[...new Set(v.map((x) => typeof x))].join('/') || 'anything'}` : typeof v);
  const problems: string[] = [];
  for (const [key, want] of Object.entries(template as Record<string, unknown>)) {
    const got = (cfg as Record<string, unknown>)[key];
    if (!(key in (cfg as object))) problems.push(`'${key}' is missing`);
    else if (want !== null && kind(got) !== kind(want) && !(Array.isArray(want) && Array.isArray(got) && want.length === 0)) {
      problems.push(`'${key}' is ${kind(got)} ${JSON.stringify(got)}, expected ${kind(want)}`);
    } else if (typeof got === 'number' && !Number.isFinite(got)) problems.push(`'${key}' is not a finite number`);
  }
  if (problems.length) throw userError(`--resume: ${path} does not hold a valid configuration: ${problems.join('; ')}`);
}

/** Options every training command has for where its run goes and how the engine runs, none part of the run's configuration. */
export function runOptions(dirPattern: string) {
  return {
    out: { type: 'string', placeholder: 'dir', description: `run directory (default runs/${dirPattern}-<timestamp>)` },
    resume: { type: 'string', placeholder: 'dir', description: 'continue the run in dir from its last checkpoints, with its config.json' },
    device: { type: 'string', default: 'auto', placeholder: 'auto|name', description: 'WebGPU adapter: auto, or part of an adapter name (e.g. llvmpipe, nvidia)' },
    quiet: { type: 'boolean', description: 'print only the summary' },
    ...ENGINE_CLI_OPTIONS,
  } as const;
}

/** The options of runOptions: allowed together with --resume. */
export const RUN_ONLY_OPTIONS: readonly string[] = ['resume', 'device', 'quiet', 'out', 'eager', 'tune'];

type RunArgs = { resume?: string; out?: string; device: string; quiet?: boolean; tune?: boolean; eager?: boolean };

/** How a run goes besides its configuration. */
export interface RunSettings {
  dir: string;
  /** Continue what `dir` holds. */
  resume?: boolean;
  quiet?: boolean;
  /** Polled after every training step; true stops the run at a checkpoint (PhaseInterrupted). */
  stopRequested?: () => boolean;
  /** Every step through autograd instead of replaying a recorded step (debugging). */
  eager?: boolean;
}

/** A training command: its command line, its configuration, its training and its summary. */
export interface TrainingCommand<S extends OptionSpecs, C, R> {
  /** File stem under algorithms/ (node algorithms/<name>.ts). */
  name: string;
  spec: CliSpec<S>;
  /** The configuration a fresh run's command line asks for, and the stem of its run directory. */
  config(args: CliValues<S>): { cfg: C; name: string };
  /** The start of the device line, e.g. 'SRPO pendulum-quick'. */
  title(cfg: C): string;
  train(cfg: C, run: RunSettings, args: CliValues<S>): Promise<R>;
  /** What a configuration of this run looks like (its preset), to check a resumed run's config.json against. */
  template(cfg: C): C;
  print(summary: R, cfg: C): void;
}

/**
 * The whole command: parses argv (null after --help), opens or resumes the run directory, starts the device,
 * trains with Ctrl-C handling, prints the summary.
 */
export async function runCommand<S extends OptionSpecs, C, R>(cmd: TrainingCommand<S, C, R>, argv: string[]): Promise<R | null> {
  const args = parseCli(cmd.spec, argv);
  if (!args) return null;
  const run = args as unknown as RunArgs;
  const trainingOptions = Object.keys(cmd.spec.options).filter((k) => !RUN_ONLY_OPTIONS.includes(k));
  const { cfg, dir, resumed, release } = openRun<C>(run, argv, trainingOptions, () => cmd.config(args));
  try {
    if (resumed) checkConfig(join(dir, RUN_FILES.config), cfg, cmd);
    const rt = await openDevice(run.device, { tune: run.tune, log: tuningLog(run.quiet) });
    if (!run.quiet) process.stderr.write(`${cmd.title(cfg)}: device ${rt.info.description || rt.info.vendor || 'unknown'} (${rt.info.adapterClass}); run directory ${dir}\n`);
    const summary = await interruptible(dir, `node algorithms/${cmd.name}.ts`, (stopRequested) =>
      cmd.train(cfg, { dir, resume: resumed, quiet: run.quiet, stopRequested, eager: run.eager }, args),
    );
    cmd.print(summary, cfg);
    return summary;
  } catch (err) {
    // a fresh run that failed before producing anything leaves no directory behind
    if (!resumed && holdsOnlyConfig(dir)) {
      release();
      rmSync(dir, { recursive: true, force: true });
    }
    throw err;
  } finally {
    release();
    disposeEngine();
  }
}

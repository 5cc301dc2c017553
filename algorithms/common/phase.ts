// A training phase: its steps run by the step scheduler, progress, log, NaN checks, evaluations, checkpoints and
// Ctrl-C, and the decision where a phase starts (loaded from a file, resumed, complete, or from scratch).
import { existsSync } from 'node:fs';
import { formatNumber, GpuChurnGuard, NonFiniteLossError, Progress, assertFinite, say, type ProgressStream } from './monitor.ts';
import { NonFiniteStateError, loadCheckpoint, readCheckpointInfo, saveCheckpoint, type CheckpointParts } from './run-files.ts';
import { StepScheduler, type StepLosses } from './step-scheduler.ts';

export interface PhaseRun {
  /** Name in progress lines, log records and checkpoints. */
  phase: string;
  steps: number;
  /** Where checkpoints go. */
  checkpoint: string;
  parts: CheckpointParts;
  /**
   * Runs one step; returns its losses, left on the GPU. Called inside tidy. It is recorded once and replayed
   * (engine/record.ts), so it must read nothing back, write nothing from the host, draw random numbers from
   * Generators and take learning rates from the optimisers' schedules.
   */
  step: (variant: number) => StepLosses;
  /**
   * Which variant of the step the step at 0-based index `step` runs (e.g. 1 on the steps that also update a
   * target network): a small non-negative integer passed to `step`. Each variant is recorded on its own at
   * its second use and replayed after that. Absent: always 0.
   */
  variant?: (step: number) => number;
  /** Run every step eagerly through autograd (a step that cannot be recorded, or debugging). */
  eager?: boolean;
  /** Called at log points with the step reached; may return evaluation results to log. */
  evaluate?: (step: number) => Promise<Record<string, number> | null>;
  evalEvery?: number;
}

export interface RunContext {
  cfg: { logEvery: number; checkpointEvery: number };
  /** Polled after every step; when it returns true the phase checkpoints and stops with PhaseInterrupted. */
  stopRequested?: () => boolean;
  /** Where log records go (a JsonlLog, or anything with write). */
  log: { write(record: Record<string, unknown>): void } | null;
  stream?: ProgressStream;
  /** Print messages (default: stderr through the progress line). */
  quiet?: boolean;
  /** Run every phase eagerly instead of replaying a recorded step (debugging). */
  eager?: boolean;
}

/** How a training session ended, for its log record: done, interrupted (Ctrl-C), non-finite (a NaN or Inf loss or state), or error. */
export function sessionEnd(err: unknown): { end: 'done' | 'interrupted' | 'non-finite' | 'error'; error?: string } {
  if (err === undefined) return { end: 'done' };
  const error = err instanceof Error ? err.message : String(err);
  if (err instanceof PhaseInterrupted) return { end: 'interrupted', error };
  if (err instanceof NonFiniteLossError || err instanceof NonFiniteStateError) return { end: 'non-finite', error };
  return { end: 'error', error };
}

/** A phase stopped on request (Ctrl-C) after writing its checkpoint. */
export class PhaseInterrupted extends Error {
  readonly phase: string;
  readonly step: number;
  readonly userFacing = true;

  constructor(phase: string, step: number, checkpoint: string) {
    super(`interrupted in phase '${phase}' at step ${step}; checkpoint written to ${checkpoint}`);
    this.name = 'PhaseInterrupted';
    this.phase = phase;
    this.step = step;
  }
}

export interface PhaseResult {
  /** Name in progress lines, log records and checkpoints. */
  phase: string;
  steps: number;
  /** Step the phase started from in this session (non-zero when resumed). */
  startStep: number;
  ms: number;
  last: Record<string, number>;
  evals: { step: number; mean: number; std: number }[];
}

/**
 * Runs a phase from `startStep` to `run.steps`: losses summed on the GPU and read every logEvery steps (and at
 * the end), checked for NaN/Inf, logged and shown; checkpoints at log points every checkpointEvery steps and
 * at the end, each written only after the losses up to it were found finite.
 */
export async function runPhase(run: PhaseRun, ctx: RunContext, startStep = 0): Promise<PhaseResult> {
  const { cfg } = ctx;
  const progress = new Progress(run.phase, run.steps, { stream: ctx.stream, startStep });
  const churn = new GpuChurnGuard();
  const t0 = performance.now();
  let lastCheckpoint = startStep;
  let checkpointPath: string | null = startStep > 0 ? run.checkpoint : null;
  let last: Record<string, number> = {};
  const evals: PhaseResult['evals'] = [];
  const scheduler = new StepScheduler(run.step, {
    eager: (run.eager ?? false) || (ctx.eager ?? false),
    startStep,
    report: ({ step, fromStep, values }) => {
      assertFinite(run.phase, step, values, { fromStep, checkpoint: checkpointPath });
      last = values;
      ctx.log?.write({ phase: run.phase, step, ...values });
      if (step < run.steps) progress.update(step, values);
    },
  });
  try {
    for (let step = startStep; step < run.steps; ) {
      scheduler.run(run.variant ? run.variant(step) : 0);
      step++;
      const end = step === run.steps;
      const stop = !end && (ctx.stopRequested?.() ?? false);
      if (step - scheduler.lastReadStep < cfg.logEvery && !end && !stop) continue;
      const every = run.evalEvery ?? 0;
      const evalDue = run.evaluate !== undefined && (end || (every > 0 && step % every === 0));
      const checkpointDue = end || stop || step - lastCheckpoint >= cfg.checkpointEvery;
      // nothing is saved or evaluated before the losses up to it were found finite
      await scheduler.readLosses(step, checkpointDue || evalDue);
      churn.check();
      if (checkpointDue) {
        await saveCheckpoint(run.checkpoint, { ...run.parts, step, extra: { phase: run.phase, complete: end, steps: run.steps } });
        checkpointPath = run.checkpoint;
        lastCheckpoint = step;
      }
      if (stop) {
        progress.finish(step, last);
        throw new PhaseInterrupted(run.phase, step, run.checkpoint);
      }
      if (evalDue) {
        const r = await run.evaluate!(step);
        if (r) {
          evals.push({ step, mean: r.mean!, std: r.std! });
          ctx.log?.write({ phase: run.phase, step, eval: r });
          if (!ctx.quiet) progress.log(`[${run.phase}] step ${step}: evaluation score ${formatNumber(r.mean!)} +- ${formatNumber(r.std!)}`);
        }
      }
    }
    progress.finish(run.steps, last);
  } finally {
    scheduler.dispose();
  }
  return { phase: run.phase, steps: run.steps, startStep, ms: performance.now() - t0, last, evals };
}

function phaseState(path: string): { step: number; complete: boolean } | null {
  if (!existsSync(path)) return null;
  const info = readCheckpointInfo(path);
  return { step: info.step, complete: info.extra['complete'] === true };
}

/**
 * Decides where a phase starts: loaded from `file` (its networks only; the phase is skipped and a copy goes to
 * `path`, so that --resume finds it complete), resumed from `path`, complete there, or from scratch (0).
 */
export async function phaseStart(
  phase: string,
  parts: CheckpointParts,
  path: string,
  opts: { file?: string; resume?: boolean; quiet?: boolean; log: { write(record: Record<string, unknown>): void } },
): Promise<number | 'done'> {
  const { file, log } = opts;
  if (file) {
    const info = loadCheckpoint(file, { modules: parts.modules });
    say(opts, `${phase}: loaded from ${file}${info.step ? ` (step ${info.step})` : ''}; phase skipped`);
    log.write({ phase, loaded: file });
    await saveCheckpoint(path, { modules: parts.modules, step: info.step, extra: { phase, complete: true, loadedFrom: file } });
    return 'done';
  }
  if (!opts.resume) return 0;
  const state = phaseState(path);
  if (!state) return 0;
  // a complete phase needs only its networks (a copy of a loaded file holds nothing else)
  loadCheckpoint(path, state.complete ? { modules: parts.modules } : parts);
  say(opts, `${phase}: ${state.complete ? 'complete' : `resuming at step ${state.step}`} (${path})`);
  if (!state.complete) log.write({ phase, resumedAt: state.step });
  return state.complete ? 'done' : state.step;
}
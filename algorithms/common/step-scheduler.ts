// How a training loop runs its steps: the first use of each step variant eagerly through autograd (building
// pipelines, lazily made buffers and the loss sums), the second recorded, every later one replayed (a run of k
// consecutive steps of one variant in one submit). Losses are summed on the GPU and read back asynchronously:
// a readback's values are reported when the next one is queued, or at once when the caller must know them
// (before a checkpoint, an evaluation or the end), so training goes on while they travel.
import { runtime } from '../../engine/runtime.ts';
import { recordStep, type RecordedStep } from '../../engine/record.ts';
import { tidy, type Tensor } from '../../engine/tensor.ts';
import { LossMeter } from './monitor.ts';

/** One training step's losses, left on the GPU: [1] tensors by name, or [k] tensors with their components' names. */
export type StepLosses = Record<string, Tensor | [Tensor, string[]]>;

/** The values of one readback: the mean of each loss over steps fromStep + 1 .. step. */
export interface LossReport {
  step: number;
  fromStep: number;
  values: Record<string, number>;
  /** What the caller attached when it queued the readback (counters of that log point). */
  extra: Record<string, number>;
}

export interface StepSchedulerOptions {
  /** Every step eagerly through autograd (a step that cannot be recorded, or debugging). */
  eager?: boolean;
  /** The step count the first readback starts from (non-zero when resumed). */
  startStep?: number;
  /** Receives every readback in order; may throw (a non-finite loss) to stop the loop. */
  report(r: LossReport): void;
}

export class StepScheduler {
  private readonly meter = new LossMeter();
  private readonly recorded = new Map<number, RecordedStep<Record<string, never>>>();
  private readonly ranEagerly = new Set<number>();
  private readonly eager: boolean;
  private readonly report: (r: LossReport) => void;
  private readonly step: (variant: number) => StepLosses;
  private pending: Promise<LossReport> | null = null;
  private lastRead: number;

  /**
   * `step` runs one step of a variant (a small non-negative integer) and returns its losses. It is recorded once
   * per variant and replayed (engine/record.ts), so it must read nothing back, write nothing from the host, draw
   * random numbers from Generators and take learning rates from the optimisers' schedules.
   */
  constructor(step: (variant: number) => StepLosses, opts: StepSchedulerOptions) {
    this.step = step;
    this.eager = opts.eager ?? false;
    this.report = opts.report;
    this.lastRead = opts.startStep ?? 0;
  }

  /** Runs `count` consecutive steps of `variant`. */
  run(variant: number, count = 1): void {
    const stepAndMeter = () => {
      this.meter.add(this.step(variant));
      return {};
    };
    let left = count;
    while (left > 0) {
      if (this.eager || !this.ranEagerly.has(variant)) {
        this.ranEagerly.add(variant);
        tidy(stepAndMeter);
        runtime().flush();
        left--;
        continue;
      }
      const rec = this.recorded.get(variant);
      if (!rec) {
        this.recorded.set(variant, recordStep(stepAndMeter));
        left--;
        continue;
      }
      rec.replay(left);
      left = 0;
    }
  }

  /** The step count of the last readback queued. */
  get lastReadStep(): number {
    return this.lastRead;
  }

  /**
   * Queues a readback of the losses since the last one, as of `step`, and reports the previous readback. With
   * `wait`, this one is reported too before returning. `extra` travels with it to the report.
   */
  async readLosses(step: number, wait: boolean, extra: Record<string, number> = {}): Promise<void> {
    const fromStep = this.lastRead;
    this.lastRead = step;
    const values = this.meter.pending > 0 ? this.meter.drainLater() : Promise.resolve({});
    const ticket = values.then((v) => ({ step, fromStep, values: v, extra }));
    // a readback still in flight when the loop stops (an error, a non-finite loss) is never awaited
    ticket.catch(() => {});
    await this.flush();
    if (wait) this.report(await ticket);
    else this.pending = ticket;
  }

  /** Reports a readback still in flight. */
  async flush(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (pending) this.report(await pending);
  }

  dispose(): void {
    for (const r of this.recorded.values()) r.dispose();
    this.meter.dispose();
  }
}

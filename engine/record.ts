// Recorded training steps. A step function runs once under the recorder, which captures every dispatch (its
// pipeline, bind group and workgroup counts) with every buffer fixed; a replay encodes that list again into
// one command buffer, with no tensors, no autograd and no kernel lookups. The few values that change from
// step to step (Philox positions, AdamW's bias corrections and learning rate) are host bookkeeping the ops
// registered with `runtime().perStep`: a replay re-runs it in recording order, so generators and optimisers
// advance exactly as eager steps would, and writes every such uniform struct into one arena with one write.
//
// A recordable step reads nothing back, makes no host writes, draws random numbers only from Generators and
// takes a fixed path through its branches; the recorder enforces the first two and the per-step registry.
import { runtime, type CapturedStep, type DispatchRecord, type Runtime } from './runtime.ts';
import { keep, tidy, Tensor } from './tensor.ts';

type TensorTree = Tensor | TensorTree[] | { [key: string]: TensorTree };

function flatten(v: TensorTree, out: Tensor[]): Tensor[] {
  if (v instanceof Tensor) out.push(v);
  else if (Array.isArray(v)) for (const x of v) flatten(x, out);
  else for (const x of Object.values(v)) flatten(x, out);
  return out;
}

const MAP_READ = 0x01 | 0x08; // MAP_READ | COPY_DST
const UNIFORM = 0x40 | 0x08; // UNIFORM | COPY_DST
const QUERY_RESOLVE = 0x200;
const COPY_SRC = 0x04;
const MAX_QUERIES = 4096;

/** One dispatch's GPU time from `RecordedStep.profile`. */
export interface DispatchTiming {
  kernel: string;
  ms: number;
}

export class RecordedStep<T extends TensorTree> {
  /** The tensors the step returned; every replay overwrites them in place. */
  readonly outputs: T;
  /** Dispatches per step. */
  readonly dispatchCount: number;
  private readonly rt: Runtime;
  private captured: CapturedStep;
  private readonly dynamicOps: DispatchRecord[];
  private readonly slotBytes: number;
  private readonly laneBytes: number;
  /** Bind groups per lane (a lane is one step of a multi-step submit) for the dispatches with per-step values. */
  private laneBindGroups: GPUBindGroup[][] = [];
  private arena: GPUBuffer | null = null;
  private host: ArrayBuffer = new ArrayBuffer(0);
  private hostView: DataView = new DataView(this.host);
  private readonly outputList: Tensor[];
  private disposed = false;

  constructor(rt: Runtime, captured: CapturedStep, outputs: T) {
    this.rt = rt;
    this.captured = captured;
    this.outputs = outputs;
    this.outputList = flatten(outputs, []);
    this.dynamicOps = captured.ops.filter((op): op is DispatchRecord => op.kind === 'dispatch' && op.dynamic !== null);
    this.dispatchCount = captured.ops.filter((op) => op.kind === 'dispatch').length;
    const align = rt.device.limits.minUniformBufferOffsetAlignment;
    let slot = align;
    for (const op of this.dynamicOps) slot = Math.max(slot, Math.ceil(op.kernel.uniform!.size / align) * align);
    this.slotBytes = slot;
    this.laneBytes = slot * this.dynamicOps.length;
    // the arena and its bind groups are made now, so the first replay costs what every later one does
    this.ensureLanes(1);
  }

  /** The kernels a step dispatches, in order ('copy' for buffer copies): for profiling and tests. */
  get kernelNames(): string[] {
    return this.captured.ops.map((op) => (op.kind === 'copy' ? 'copy' : op.kernel.name));
  }

  /** Per-step uniform structs (random positions, optimiser steps) a replay rewrites. */
  get perStepCount(): number {
    return this.dynamicOps.length;
  }

  private ensureLanes(lanes: number): void {
    if (this.laneBindGroups.length >= lanes || this.dynamicOps.length === 0) return;
    const bytes = this.laneBytes * lanes;
    this.arena?.destroy();
    this.arena = this.rt.device.createBuffer({ size: bytes, usage: UNIFORM, label: 'replay uniforms' });
    this.host = new ArrayBuffer(bytes);
    this.hostView = new DataView(this.host);
    this.laneBindGroups = [];
    for (let lane = 0; lane < lanes; lane++) {
      this.laneBindGroups.push(
        this.dynamicOps.map((op, i) =>
          this.rt.createBindGroup(op.kernel, op.storage, { buffer: this.arena!, offset: lane * this.laneBytes + i * this.slotBytes, size: op.kernel.uniform!.size }),
        ),
      );
    }
  }

  private encode(steps: number, readInto: GPUBuffer | null, timestamps: GPUQuerySet | null = null): void {
    if (this.disposed) throw new Error('RecordedStep: replay after dispose');
    if (!Number.isInteger(steps) || steps < 1) throw new Error(`RecordedStep.replay: steps must be a positive integer, got ${steps}`);
    const rt = this.rt;
    // pending eager work goes first, so the arena write below cannot overtake it
    rt.flush();
    this.ensureLanes(steps);
    const { refreshes } = this.captured;
    const dyn = this.dynamicOps;
    for (let lane = 0; lane < steps; lane++) {
      for (let i = 0; i < refreshes.length; i++) refreshes[i]!();
      let offset = lane * this.laneBytes;
      for (let i = 0; i < dyn.length; i++) {
        const op = dyn[i]!;
        op.kernel.packInto(this.hostView, offset, op.dynamic!.sources);
        offset += this.slotBytes;
      }
    }
    if (this.arena) rt.device.queue.writeBuffer(this.arena, 0, this.host, 0, this.laneBytes * steps);
    const encoder = rt.device.createCommandEncoder();
    const ops = this.captured.ops;
    for (let lane = 0; lane < steps; lane++) {
      const bindGroups = this.laneBindGroups[lane];
      let pass: GPUComputePassEncoder | null = null;
      let pipeline: GPUComputePipeline | null = null;
      let d = 0;
      let timed = 0;
      for (let i = 0; i < ops.length; i++) {
        const op = ops[i]!;
        if (op.kind === 'copy') {
          if (pass) pass.end();
          pass = null;
          pipeline = null;
          encoder.copyBufferToBuffer(op.src.buffer, op.src.offset ?? 0, op.dst.buffer, op.dst.offset ?? 0, op.bytes);
          continue;
        }
        if (timestamps) {
          // a pass per dispatch, so the pass's timestamps bracket that dispatch alone
          if (pass) pass.end();
          const q = 2 * (lane * this.dispatchCount + timed++);
          pass = encoder.beginComputePass({ timestampWrites: { querySet: timestamps, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 } });
          pipeline = null;
        }
        if (!pass) pass = encoder.beginComputePass();
        if (op.pipeline !== pipeline) pass.setPipeline((pipeline = op.pipeline));
        pass.setBindGroup(0, op.dynamic ? bindGroups![d++]! : op.bindGroup);
        const wg = op.workgroups;
        pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
      }
      if (pass) pass.end();
    }
    if (timestamps) encoder.resolveQuerySet(timestamps, 0, timestamps.count, readInto!, 0);
    else if (readInto) {
      let offset = 0;
      for (const t of this.outputList) {
        const b = t.binding();
        encoder.copyBufferToBuffer(b.buffer, b.offset ?? 0, readInto, offset, t.size * 4);
        offset += t.size * 4;
      }
    }
    rt.submitReplay(encoder.finish(), this.dispatchCount * steps);
  }

  /** Runs `steps` more steps (default 1) in one submit. */
  replay(steps = 1): void {
    this.encode(steps, null);
  }

  /**
   * Runs `steps` more steps, then copies the outputs' values as they are after the last one; the promise
   * resolves when the GPU gets there, so the host can go on replaying meanwhile. One array per output tensor.
   */
  async replayAndRead(steps = 1): Promise<Float32Array[]> {
    let bytes = 0;
    for (const t of this.outputList) bytes += t.size * 4;
    const staging = this.rt.device.createBuffer({ size: Math.max(4, bytes), usage: MAP_READ, label: 'replay readback' });
    this.encode(steps, staging);
    await staging.mapAsync(0x0001 /* GPUMapMode.READ */);
    const all = new Float32Array(staging.getMappedRange().slice(0));
    staging.unmap();
    staging.destroy();
    this.rt.throwErrors();
    const out: Float32Array[] = [];
    let at = 0;
    for (const t of this.outputList) {
      out.push(all.slice(at, at + t.size));
      at += t.size;
    }
    return out;
  }

  /**
   * Runs `steps` more steps with the GPU time of every dispatch measured by timestamp queries: one entry per
   * dispatch, in step order (copies are not timed). Each dispatch gets a compute pass of its own, and the time
   * between passes is in no dispatch's share, so the sum differs somewhat from a plain replay's wall time.
   * Needs the device's 'timestamp-query' feature (see `canProfile`); the step advances like a replay.
   */
  async profile(steps = 1): Promise<DispatchTiming[]> {
    if (!this.canProfile) throw new Error("RecordedStep.profile: the device lacks the 'timestamp-query' feature");
    // a query set holds at most 4096 timestamps, two per dispatch: long profiles go in several submits
    const perSubmit = Math.floor(MAX_QUERIES / (2 * this.dispatchCount));
    if (perSubmit < 1) throw new Error(`RecordedStep.profile: a step of ${this.dispatchCount} dispatches needs more than the ${MAX_QUERIES} timestamps a query set holds`);
    const names = this.captured.ops.filter((op): op is DispatchRecord => op.kind === 'dispatch').map((op) => op.kernel.name);
    const device = this.rt.device;
    const out: DispatchTiming[] = [];
    for (let done = 0; done < steps; done += perSubmit) {
      const count = 2 * this.dispatchCount * Math.min(perSubmit, steps - done);
      const querySet = device.createQuerySet({ type: 'timestamp', count });
      const resolved = device.createBuffer({ size: count * 8, usage: QUERY_RESOLVE | COPY_SRC, label: 'profile timestamps' });
      const staging = device.createBuffer({ size: count * 8, usage: MAP_READ, label: 'profile readback' });
      try {
        this.encode(count / (2 * this.dispatchCount), resolved, querySet);
        const encoder = device.createCommandEncoder();
        encoder.copyBufferToBuffer(resolved, 0, staging, 0, count * 8);
        device.queue.submit([encoder.finish()]);
        await staging.mapAsync(0x0001 /* GPUMapMode.READ */);
        const ticks = new BigUint64Array(staging.getMappedRange().slice(0));
        staging.unmap();
        this.rt.throwErrors();
        for (let i = 0; i < count / 2; i++) {
          // nanoseconds; an implementation may report an end before its beginning for a tiny pass
          const ns = Number(ticks[2 * i + 1]! - ticks[2 * i]!);
          out.push({ kernel: names[i % names.length]!, ms: Math.max(0, ns) / 1e6 });
        }
      } finally {
        querySet.destroy();
        resolved.destroy();
        staging.destroy();
      }
    }
    return out;
  }

  /** Whether `profile` can run here. */
  get canProfile(): boolean {
    return this.rt.device.features.has('timestamp-query');
  }

  /** Frees the step's own buffers (its outputs included) and its arena. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const t of this.outputList) t.dispose();
    this.rt.releaseRecording(this.captured);
    this.arena?.destroy();
    this.arena = null;
  }
}

/**
 * Runs `fn` once as a normal step while recording it, and returns the recording. Tensors made inside are
 * disposed when it returns, except the returned ones, which the recording owns (dispose the recording, not
 * them). Autograd works as usual inside; the tape is cleared by the step's own backward.
 */
export function recordStep<T extends TensorTree>(fn: () => T): RecordedStep<T> {
  const rt = runtime();
  rt.beginRecording();
  let outputs: T;
  try {
    outputs = tidy(fn);
    for (const t of flatten(outputs, [])) keep(t);
  } catch (e) {
    rt.abortRecording();
    throw e;
  }
  return new RecordedStep(rt, rt.endRecording(), outputs);
}

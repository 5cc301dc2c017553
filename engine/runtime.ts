// The execution layer: one device, a pool of whole buffers, pipelines and bind groups built once, and one open
// compute pass into which every op encodes its dispatch. Work is submitted in batches (at a readback, an
// explicit flush, or when a batch grows large); buffers released by ops go back to the pool only after the
// batch that last used them is submitted, so a host write into a recycled buffer can never overtake a
// pending read of its old contents.
import { Kernel } from './kernel.ts';
import { describeDevice, requestDevice, GPUEngineError, type DeviceInfo, type RequestOptions } from './device.ts';

export interface BufferBinding {
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

/** Anything that can be bound: a raw buffer binding or a tensor (which exposes its storage this way). */
export interface Bindable {
  binding(): BufferBinding;
}

export type BindingArg = BufferBinding | Bindable;

/** A kernel's uniform values by field name: one object, or several searched in order (first hit wins). */
export type UniformValues = Readonly<Record<string, number>>;
export type UniformArg = UniformValues | readonly UniformValues[] | null;

/**
 * One recorded dispatch. `dynamic` is set when its uniforms read per-step values (objects registered with
 * perStep): a replay repacks them from those live objects after re-running the per-step refreshes.
 */
export interface DispatchRecord {
  kind: 'dispatch';
  kernel: Kernel;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
  workgroups: [number, number, number];
  storage: BufferBinding[];
  dynamic: { sources: readonly UniformValues[] } | null;
}

export interface CopyRecord {
  kind: 'copy';
  src: BufferBinding;
  dst: BufferBinding;
  bytes: number;
}

export type RecordedOp = DispatchRecord | CopyRecord;

/** What a recording captured: its ops in order and the host-side refreshes of its per-step values. */
export interface CapturedStep {
  ops: RecordedOp[];
  refreshes: (() => void)[];
  /** Buffers the step acquired: they stay out of the pool until the recording is released. */
  pinned: Set<GPUBuffer>;
}

interface RecordingState extends CapturedStep {
  live: Set<object>;
  usedLive: Set<object>;
  /** Pinned buffers released during recording: the step may reuse them (its dispatches run in order). */
  localFree: Map<number, GPUBuffer[]>;
  /** Per-dispatch uniform buffers of this first execution (replays use one arena instead). */
  scratchUniforms: GPUBuffer[];
  staticUniforms: Set<GPUBuffer>;
}

class RecordingError extends Error {}

const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST
const UNIFORM_USAGE = 0x40 | 0x08; // UNIFORM | COPY_DST
const MAP_READ_USAGE = 0x01 | 0x08; // MAP_READ | COPY_DST
const MAX_UNIFORMS = 8192;
// Dawn on lavapipe segfaults once about 64k bind groups are alive at once; dropped ones live until JS GC
// collects them, so the cache stays far below that.
const MAX_BIND_GROUPS = 16384;

export interface RuntimeOptions extends RequestOptions {
  /** Use this device instead of creating one (embedding in another WebGPU program). */
  device?: GPUDevice;
  adapterInfo?: GPUAdapterInfo;
  /** Submit after every dispatch and check errors per dispatch: slow, but names the failing kernel exactly. */
  debug?: boolean;
  /** Dispatches per batch before an automatic submit. */
  maxBatch?: number;
}

function sizeClass(bytes: number): number {
  let s = 256;
  while (s < bytes) s *= 2;
  return s;
}

export class Runtime {
  readonly device: GPUDevice;
  readonly info: DeviceInfo;
  readonly ownsDevice: boolean;
  debug: boolean;
  maxBatch: number;

  private freeBuffers = new Map<number, GPUBuffer[]>();
  private releasedThisBatch: GPUBuffer[] = [];
  private bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  private pipelines = new Map<Kernel, GPUComputePipeline>();
  private layouts = new Map<Kernel, GPUBindGroupLayout>();
  /** Bind groups keyed by kernel, uniform values and bound ranges, so a repeated dispatch builds nothing. */
  private bindGroups = new Map<string, GPUBindGroup>();
  private bindGroupsByUniform = new Map<GPUBuffer, string[]>();
  private uniforms = new Map<string, GPUBuffer>();
  private destroyAfterSubmit: GPUBuffer[] = [];
  private stagingFree = new Map<number, GPUBuffer[]>();

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchKernels: string[] = [];
  private errors: Error[] = [];
  /** Error-scope checks still in flight; sync() waits for them so errors surface at the sync that caused them. */
  private pendingChecks = new Set<Promise<void>>();
  private lost = false;

  private recording: RecordingState | null = null;
  /** Buffers bound by live recordings (count of recordings), and those recordings' pinned buffers. */
  private boundByRecordings = new Map<GPUBuffer, number>();
  private pinnedBuffers = new Set<GPUBuffer>();
  /** Pinned buffers whose tensors are all gone: pooled again when their recording is released. */
  private releasedPinned = new Set<GPUBuffer>();
  private pinnedUniforms = new Map<GPUBuffer, number>();
  private evictedPinnedUniforms = new Set<GPUBuffer>();
  /** Counters for benchmarks and for checking that a step does no host work it should not. */
  stats = { dispatches: 0, submits: 0, buffersCreated: 0, bindGroupsCreated: 0, uniformsCreated: 0, readbacks: 0 };

  constructor(device: GPUDevice, info: DeviceInfo, ownsDevice: boolean, opts: RuntimeOptions = {}) {
    this.device = device;
    this.info = info;
    this.ownsDevice = ownsDevice;
    this.debug = opts.debug ?? false;
    this.maxBatch = opts.maxBatch ?? 1024;
    device.addEventListener('uncapturederror', (ev) => {
      const e = (ev as GPUUncapturedErrorEvent).error;
      this.errors.push(new GPUEngineError(`uncaptured GPU error: ${e.message}`));
    });
    void device.lost.then((l) => {
      this.lost = true;
      if (l.reason !== 'destroyed') this.errors.push(new GPUEngineError(`GPU device lost (${l.reason}): ${l.message}`));
    });
  }

  // ---- buffers ----

  bufferId(b: GPUBuffer): number {
    let id = this.bufferIds.get(b);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(b, id);
    }
    return id;
  }

  /** A storage buffer of at least `bytes` bytes from the pool. Its contents are undefined. */
  acquire(bytes: number): GPUBuffer {
    const size = sizeClass(bytes);
    const rec = this.recording;
    if (rec) {
      const b = rec.localFree.get(size)?.pop() ?? this.acquireFromPool(size, bytes);
      rec.pinned.add(b);
      this.pinnedBuffers.add(b);
      this.releasedPinned.delete(b);
      return b;
    }
    return this.acquireFromPool(size, bytes);
  }

  private acquireFromPool(size: number, bytes: number): GPUBuffer {
    const free = this.freeBuffers.get(size);
    const b = free?.pop();
    if (b) return b;
    if (size > this.device.limits.maxBufferSize) {
      throw new GPUEngineError(`buffer of ${bytes} bytes exceeds the device's maxBufferSize ${this.device.limits.maxBufferSize}`);
    }
    this.stats.buffersCreated++;
    const buf = this.device.createBuffer({ size, usage: STORAGE_USAGE, label: `pool${size}` });
    this.bufferId(buf);
    return buf;
  }

  /** Returns a buffer to the pool once the work encoded so far has been submitted. */
  release(b: GPUBuffer): void {
    if (this.pinnedBuffers.has(b)) {
      this.releasedPinned.add(b);
      const rec = this.recording;
      if (rec?.pinned.has(b)) {
        let list = rec.localFree.get(b.size);
        if (!list) rec.localFree.set(b.size, (list = []));
        list.push(b);
      }
      return;
    }
    if (this.boundByRecordings.has(b)) {
      throw new RecordingError(
        `a buffer bound by a recorded step was freed while the recording is alive; tensors a recorded step reads must outlive it (dispose the recording first)`,
      );
    }
    if (this.encoder) this.releasedThisBatch.push(b);
    else this.pushFree(b);
  }

  /**
   * Each free list is kept sorted by buffer id, highest first, so acquire() takes the oldest free buffer. A
   * training step that allocates and frees in the same order then gets the same buffers every time and its
   * bind groups come from the cache; in LIFO order the assignment drifts from step to step, every dispatch
   * builds a new bind group, and lavapipe crashes (SIGSEGV) once some 65k of them are alive.
   */
  private pushFree(b: GPUBuffer): void {
    let list = this.freeBuffers.get(b.size);
    if (!list) this.freeBuffers.set(b.size, (list = []));
    const id = this.bufferId(b);
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.bufferId(list[mid]!) > id) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, b);
  }

  /** Destroys pooled buffers not in use (e.g. between benchmark cases). */
  trimPool(): void {
    this.flush();
    for (const list of this.freeBuffers.values()) for (const b of list) b.destroy();
    this.freeBuffers.clear();
    this.bindGroups.clear();
    this.bindGroupsByUniform.clear();
  }

  /**
   * Host-to-GPU write. A buffer that pending work may read is first flushed, so the write lands after it in
   * queue order.
   */
  write(buffer: GPUBuffer, offset: number, data: ArrayBufferView, pendingUse = true): void {
    if (this.recording) {
      throw new RecordingError('a host write inside a recorded step would not be replayed; create constants and upload data before recording');
    }
    if (pendingUse && this.encoder) this.flush();
    this.device.queue.writeBuffer(buffer, offset, data.buffer, data.byteOffset, data.byteLength);
  }

  async read(binding: BufferBinding): Promise<ArrayBuffer> {
    if (this.recording) throw new RecordingError('a readback inside a recorded step is not allowed; return the tensor from the step and read it after');
    const offset = binding.offset ?? 0;
    const size = binding.size ?? binding.buffer.size - offset;
    const stagingSize = sizeClass(size);
    const staging =
      this.stagingFree.get(stagingSize)?.pop() ??
      this.device.createBuffer({ size: stagingSize, usage: MAP_READ_USAGE, label: `staging${stagingSize}` });
    this.endPass();
    const enc = this.encoder ?? this.device.createCommandEncoder();
    this.encoder = enc;
    enc.copyBufferToBuffer(binding.buffer, offset, staging, 0, Math.ceil(size / 4) * 4);
    this.flush();
    this.stats.readbacks++;
    await staging.mapAsync(0x0001 /* GPUMapMode.READ */, 0, Math.ceil(size / 4) * 4);
    const out = staging.getMappedRange(0, Math.ceil(size / 4) * 4).slice(0, size);
    staging.unmap();
    let list = this.stagingFree.get(stagingSize);
    if (!list) this.stagingFree.set(stagingSize, (list = []));
    list.push(staging);
    if (this.pendingChecks.size) await Promise.all([...this.pendingChecks]);
    this.throwErrors();
    return out;
  }

  // ---- pipelines, uniforms and bind groups ----

  private layoutFor(k: Kernel): GPUBindGroupLayout {
    let layout = this.layouts.get(k);
    if (!layout) {
      layout = this.device.createBindGroupLayout({
        label: k.name,
        entries: k.bindings.map((b) => ({
          binding: b.binding,
          visibility: 0x4 /* GPUShaderStage.COMPUTE */,
          buffer: { type: b.kind },
        })),
      });
      this.layouts.set(k, layout);
    }
    return layout;
  }

  pipeline(k: Kernel): GPUComputePipeline {
    let p = this.pipelines.get(k);
    if (p) return p;
    this.device.pushErrorScope('validation');
    const module = this.device.createShaderModule({ code: k.code, label: k.name });
    p = this.device.createComputePipeline({
      label: k.name,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [this.layoutFor(k)], label: k.name }),
      compute: { module, entryPoint: k.entryPoint },
    });
    this.track(
      this.device.popErrorScope().then(async (err) => {
        if (!err) return;
        const info = await module.getCompilationInfo();
        const lines = info.messages.map((m) => `  ${m.type} at line ${m.lineNum}:${m.linePos}: ${m.message}`).join('\n');
        this.errors.push(new GPUEngineError(`kernel ${k.name} failed to build: ${err.message}\n${lines}`));
      }),
    );
    this.pipelines.set(k, p);
    return p;
  }

  /** A uniform buffer holding exactly these bytes; identical contents share one buffer, created once. */
  uniformBuffer(bytes: ArrayBuffer): GPUBuffer {
    const words = new Uint32Array(bytes);
    let key = '';
    for (let i = 0; i < words.length; i++) key += words[i]! + ',';
    let b = this.uniforms.get(key);
    if (b) {
      // refresh its place in the insertion order used for eviction
      this.uniforms.delete(key);
      this.uniforms.set(key, b);
      return b;
    }
    b = this.device.createBuffer({ size: bytes.byteLength, usage: UNIFORM_USAGE, mappedAtCreation: true, label: 'uniform' });
    new Uint32Array(b.getMappedRange()).set(words);
    b.unmap();
    this.bufferId(b);
    this.stats.uniformsCreated++;
    this.uniforms.set(key, b);
    if (this.uniforms.size > MAX_UNIFORMS) {
      const oldest = this.uniforms.keys().next().value as string;
      const evicted = this.uniforms.get(oldest)!;
      this.uniforms.delete(oldest);
      // bind groups holding the evicted buffer must never be handed out again
      for (const bgKey of this.bindGroupsByUniform.get(evicted) ?? []) this.bindGroups.delete(bgKey);
      this.bindGroupsByUniform.delete(evicted);
      if (this.pinnedUniforms.has(evicted)) this.evictedPinnedUniforms.add(evicted);
      else this.destroyAfterSubmit.push(evicted);
    }
    return b;
  }

  /** A bind group with the uniform struct at `uniform` (for recorded steps' per-step values); not cached. */
  createBindGroup(k: Kernel, storage: BufferBinding[], uniform: BufferBinding | null): GPUBindGroup {
    let next = 0;
    const bg = this.device.createBindGroup({
      label: k.name,
      layout: this.layoutFor(k),
      entries: k.bindings.map((b) => ({ binding: b.binding, resource: b.kind === 'uniform' ? uniform! : storage[next++]! })),
    });
    this.stats.bindGroupsCreated++;
    return bg;
  }

  private buildBindGroup(k: Kernel, key: string, storage: BufferBinding[], uniforms: UniformArg): GPUBindGroup {
    const uniformBuf = k.uniform ? this.uniformBuffer(k.packUniforms(uniforms ?? {})) : null;
    const bg = this.createBindGroup(k, storage, uniformBuf ? { buffer: uniformBuf } : null);
    if (this.bindGroups.size >= MAX_BIND_GROUPS) {
      this.bindGroups.clear();
      this.bindGroupsByUniform.clear();
    }
    this.bindGroups.set(key, bg);
    if (uniformBuf) {
      let list = this.bindGroupsByUniform.get(uniformBuf);
      if (!list) this.bindGroupsByUniform.set(uniformBuf, (list = []));
      list.push(key);
    }
    return bg;
  }

  // ---- encoding ----

  private beginPass(): GPUComputePassEncoder {
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    if (!this.pass) this.pass = this.encoder.beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
  }

  /**
   * Encodes one dispatch. `buffers` names every storage binding of the kernel; `uniforms` gives every field of
   * its uniform struct. Workgroup counts beyond the per-dimension limit are an error, not a silent clamp.
   */
  dispatch(k: Kernel, buffers: Record<string, BindingArg>, uniforms: UniformArg, workgroups: [number, number?, number?]): void {
    if (this.lost) throw new GPUEngineError(`kernel ${k.name}: the GPU device is lost`);
    const wg: [number, number, number] = [workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1];
    const maxWg = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (wg[0] > maxWg || wg[1] > maxWg || wg[2] > maxWg) {
      throw new GPUEngineError(`kernel ${k.name}: workgroup count ${wg.join('x')} exceeds the device limit ${maxWg} per dimension`);
    }
    const sources: readonly UniformValues[] = uniforms === null ? [] : isSourceList(uniforms) ? uniforms : [uniforms];
    let key = k.name;
    const u = k.uniform;
    if (u) for (const f of u.fields) key += ',' + uniformValue(sources, f.name);
    const storage: BufferBinding[] = [];
    for (const b of k.bindings) {
      if (b.kind === 'uniform') continue;
      const arg = buffers[b.name];
      if (!arg) throw new GPUEngineError(`kernel ${k.name}: no buffer given for binding ${b.name}`);
      const e = 'binding' in arg ? arg.binding() : arg;
      storage.push(e);
      key += '|' + this.bufferId(e.buffer) + ':' + (e.offset ?? 0) + ':' + (e.size ?? -1);
    }
    const pipeline = this.pipeline(k);
    const rec = this.recording;
    const live = rec && u ? sources.filter((src) => rec.live.has(src)) : [];
    let bindGroup: GPUBindGroup;
    if (rec && live.length > 0) {
      for (const src of live) rec.usedLive.add(src);
      // this first execution gets a uniform buffer of its own; replays repack an arena slot instead
      const scratch = this.device.createBuffer({ size: u!.size, usage: UNIFORM_USAGE, mappedAtCreation: true, label: 'uniform(recorded)' });
      new Uint8Array(scratch.getMappedRange()).set(new Uint8Array(k.packUniforms(sources)));
      scratch.unmap();
      rec.scratchUniforms.push(scratch);
      bindGroup = this.createBindGroup(k, storage, { buffer: scratch });
    } else {
      bindGroup = this.bindGroups.get(key) ?? this.buildBindGroup(k, key, storage, sources);
      if (rec && u) rec.staticUniforms.add(this.uniformBuffer(k.packUniforms(sources)));
    }
    if (wg[0] === 0 || wg[1] === 0 || wg[2] === 0) return;
    const pass = this.beginPass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(wg[0], wg[1], wg[2]);
    this.stats.dispatches++;
    this.batchKernels.push(k.name);
    if (rec) {
      rec.ops.push({ kind: 'dispatch', kernel: k, pipeline, bindGroup, workgroups: wg, storage, dynamic: live.length > 0 ? { sources } : null });
    }
    if (this.debug || (!rec && this.batchKernels.length >= this.maxBatch)) this.flush();
  }

  /** Encodes a buffer-to-buffer copy (outside any compute pass). */
  copy(src: BufferBinding, dst: BufferBinding, bytes: number): void {
    this.endPass();
    if (!this.encoder) this.encoder = this.device.createCommandEncoder();
    this.encoder.copyBufferToBuffer(src.buffer, src.offset ?? 0, dst.buffer, dst.offset ?? 0, bytes);
    this.batchKernels.push('copy');
    this.recording?.ops.push({ kind: 'copy', src, dst, bytes });
  }

  // ---- recording (see engine/record.ts) ----

  get isRecording(): boolean {
    return this.recording !== null;
  }

  /**
   * Registers a per-step value: `values` is an object a kernel's uniforms read, and `refresh` recomputes it in
   * place. Outside a recording it does nothing. Inside one, every replay calls the refreshes in recording order
   * (so generators and optimisers advance exactly as eager steps would) and repacks the dispatches that read
   * these objects. The object must be passed to dispatch itself (in a uniform list), not copied into another.
   * With `values` null, `refresh` is host bookkeeping alone (e.g. counting steps) repeated by every replay.
   */
  perStep(values: object | null, refresh: () => void): void {
    const rec = this.recording;
    if (!rec) return;
    if (values) rec.live.add(values);
    rec.refreshes.push(refresh);
  }

  beginRecording(): void {
    if (this.recording) throw new RecordingError('a step is already being recorded');
    this.flush();
    this.recording = {
      ops: [],
      refreshes: [],
      pinned: new Set(),
      live: new Set(),
      usedLive: new Set(),
      localFree: new Map(),
      scratchUniforms: [],
      staticUniforms: new Set(),
    };
  }

  /** Ends the recording (submitting its first execution) and hands over what it captured. */
  endRecording(): CapturedStep {
    const rec = this.recording;
    if (!rec) throw new RecordingError('no step is being recorded');
    this.recording = null;
    const unused = [...rec.live].filter((v) => !rec.usedLive.has(v));
    this.flush();
    for (const b of rec.scratchUniforms) this.destroyAfterSubmit.push(b);
    const captured: CapturedStep = { ops: rec.ops, refreshes: rec.refreshes, pinned: rec.pinned };
    for (const b of rec.staticUniforms) this.pinnedUniforms.set(b, (this.pinnedUniforms.get(b) ?? 0) + 1);
    for (const b of this.buffersOf(captured)) this.boundByRecordings.set(b, (this.boundByRecordings.get(b) ?? 0) + 1);
    (captured as CapturedStep & { staticUniforms: Set<GPUBuffer> }).staticUniforms = rec.staticUniforms;
    if (unused.length) {
      this.releaseRecording(captured);
      throw new RecordingError(
        `${unused.length} per-step value(s) (e.g. a Generator.reserve position) were registered but no dispatch read them ` +
          'as a uniform source: their fields were probably copied into another object, which a replay would never refresh',
      );
    }
    return captured;
  }

  /** Abandons a recording after an error in the step function; its buffers go back to the pool. */
  abortRecording(): void {
    const rec = this.recording;
    if (!rec) return;
    this.recording = null;
    try {
      this.flush();
    } catch {
      // the step's error is the one to report
    }
    for (const b of rec.scratchUniforms) this.destroyAfterSubmit.push(b);
    for (const b of rec.pinned) {
      this.pinnedBuffers.delete(b);
      if (this.releasedPinned.delete(b)) this.release(b);
    }
  }

  private buffersOf(c: CapturedStep): Set<GPUBuffer> {
    const out = new Set<GPUBuffer>();
    for (const op of c.ops) {
      if (op.kind === 'copy') {
        out.add(op.src.buffer);
        out.add(op.dst.buffer);
      } else for (const b of op.storage) out.add(b.buffer);
    }
    return out;
  }

  /** Gives a recording's buffers back: pinned ones whose tensors are gone return to the pool. */
  releaseRecording(c: CapturedStep): void {
    for (const b of this.buffersOf(c)) {
      const n = (this.boundByRecordings.get(b) ?? 1) - 1;
      if (n > 0) this.boundByRecordings.set(b, n);
      else this.boundByRecordings.delete(b);
    }
    const statics = (c as CapturedStep & { staticUniforms?: Set<GPUBuffer> }).staticUniforms ?? new Set();
    for (const b of statics) {
      const n = (this.pinnedUniforms.get(b) ?? 1) - 1;
      if (n > 0) this.pinnedUniforms.set(b, n);
      else {
        this.pinnedUniforms.delete(b);
        if (this.evictedPinnedUniforms.delete(b)) this.destroyAfterSubmit.push(b);
      }
    }
    for (const b of c.pinned) {
      this.pinnedBuffers.delete(b);
      if (this.releasedPinned.delete(b)) this.release(b);
    }
    c.pinned.clear();
  }

  /** Submits a command buffer built outside the batching (a replay); counts it in the stats. */
  submitReplay(commands: GPUCommandBuffer, dispatches: number): void {
    this.throwErrors();
    this.device.queue.submit([commands]);
    this.stats.submits++;
    this.stats.dispatches += dispatches;
  }

  /** Submits everything encoded so far. */
  flush(): void {
    this.throwErrors();
    if (!this.encoder) return;
    this.endPass();
    const names = this.batchKernels;
    this.batchKernels = [];
    this.device.pushErrorScope('validation');
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.stats.submits++;
    this.track(this.device.popErrorScope().then((err) => {
      if (!err) return;
      const which = names.length === 1 ? `kernel ${names[0]}` : `a batch of ${names.length} dispatches (${summarize(names)})`;
      this.errors.push(new GPUEngineError(`${which} failed validation: ${err.message}`));
    }));
    for (const b of this.releasedThisBatch) this.pushFree(b);
    this.releasedThisBatch = [];
    for (const b of this.destroyAfterSubmit) b.destroy();
    this.destroyAfterSubmit = [];
  }

  /** Submits pending work and waits for the GPU to finish it; throws any error the device reported. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    while (this.pendingChecks.size) await Promise.all([...this.pendingChecks]);
    this.throwErrors();
  }

  private track(check: Promise<void>): void {
    this.pendingChecks.add(check);
    void check.finally(() => this.pendingChecks.delete(check));
  }

  throwErrors(): void {
    if (this.errors.length) {
      const errs = this.errors;
      this.errors = [];
      throw errs.length === 1 ? errs[0]! : new GPUEngineError(errs.map((e) => e.message).join('\n'));
    }
  }

  destroy(): void {
    try {
      this.flush();
    } catch {
      // errors are irrelevant once the device goes
    }
    if (this.ownsDevice) this.device.destroy();
  }
}

function isSourceList(u: UniformValues | readonly UniformValues[]): u is readonly UniformValues[] {
  return Array.isArray(u);
}

function uniformValue(sources: readonly UniformValues[], name: string): number | undefined {
  for (const src of sources) if (name in src) return src[name];
  return undefined;
}

function summarize(names: string[]): string {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts].map(([n, c]) => (c > 1 ? `${n} x${c}` : n)).join(', ');
}

let current: Runtime | null = null;

/** Starts the engine: on a device it creates, or on one handed in by an embedding program. */
export async function init(opts: RuntimeOptions = {}): Promise<Runtime> {
  if (current) return current;
  if (opts.device) {
    current = new Runtime(opts.device, describeDevice(opts.device, opts.adapterInfo), false, opts);
  } else {
    const device = await requestDevice(opts);
    current = new Runtime(device, describeDevice(device), true, opts);
  }
  return current;
}

export function runtime(): Runtime {
  if (!current) throw new GPUEngineError('the engine is not started: await init() first');
  return current;
}

export function isStarted(): boolean {
  return current !== null;
}

/** Destroys the engine's own device (a device handed in is left alone). */
export function dispose(): void {
  if (current) current.destroy();
  current = null;
}

// A host-side log of the transitions an online agent collects, in collection order, and its conversion into
// D4RL rows: an online loop steps several environment copies at once, so consecutive transitions belong to
// different episodes; a D4RL file wants every episode's rows together and in time order.
import type { D4RLData } from './d4rl.ts';

/** One batch of transitions as an online loop hands them over (actions in environment units). */
export interface TransitionChunk {
  observations: Float32Array;
  actions: Float32Array;
  rewards: Float32Array;
  nextObservations: Float32Array;
  terminals: Uint8Array;
  timeouts: Uint8Array;
  /** Which environment copy each row came from. */
  envIndex: Uint16Array;
  /** Simulator state each row's observation was taken from, when the loop records it. */
  qpos?: Float32Array;
  qvel?: Float32Array;
}

type Column = Float32Array | Uint8Array | Uint16Array;
type ColumnCtor = Float32ArrayConstructor | Uint8ArrayConstructor | Uint16ArrayConstructor;

class GrowingColumn<T extends Column> {
  data: T;
  private readonly ctor: ColumnCtor;
  readonly width: number;
  constructor(ctor: ColumnCtor, width: number) {
    this.ctor = ctor;
    this.width = width;
    this.data = new ctor(0) as T;
  }
  /** Writes n rows of `values` after the first `rows`; grows by doubling. */
  append(values: T, rows: number, n: number): void {
    const need = (rows + n) * this.width;
    if (need > this.data.length) {
      const grown = new this.ctor(Math.max(need, 2 * this.data.length, 1024 * this.width)) as T;
      grown.set(this.data.subarray(0, rows * this.width) as never);
      this.data = grown;
    }
    this.data.set(values.subarray(0, n * this.width) as never, rows * this.width);
  }
  view(rows: number): T {
    return this.data.subarray(0, rows * this.width) as T;
  }
}

/**
 * Every transition appended so far, in the order appended. Chunks must agree on the dimensions and on whether
 * they carry qpos/qvel (the first chunk decides).
 */
export class TransitionLog {
  readonly obsDim: number;
  readonly actDim: number;
  private count = 0;
  private readonly obs: GrowingColumn<Float32Array>;
  private readonly act: GrowingColumn<Float32Array>;
  private readonly rew: GrowingColumn<Float32Array>;
  private readonly next: GrowingColumn<Float32Array>;
  private readonly term: GrowingColumn<Uint8Array>;
  private readonly tout: GrowingColumn<Uint8Array>;
  private readonly env: GrowingColumn<Uint16Array>;
  private qpos: GrowingColumn<Float32Array> | null = null;
  private qvel: GrowingColumn<Float32Array> | null = null;
  private physicsDecided = false;

  constructor(obsDim: number, actDim: number) {
    if (!Number.isInteger(obsDim) || obsDim < 1 || !Number.isInteger(actDim) || actDim < 1) {
      throw new Error(`TransitionLog: obsDim and actDim must be positive integers, got ${obsDim} and ${actDim}`);
    }
    this.obsDim = obsDim;
    this.actDim = actDim;
    this.obs = new GrowingColumn(Float32Array, obsDim);
    this.act = new GrowingColumn(Float32Array, actDim);
    this.rew = new GrowingColumn(Float32Array, 1);
    this.next = new GrowingColumn(Float32Array, obsDim);
    this.term = new GrowingColumn(Uint8Array, 1);
    this.tout = new GrowingColumn(Uint8Array, 1);
    this.env = new GrowingColumn(Uint16Array, 1);
  }

  get size(): number {
    return this.count;
  }

  append(chunk: TransitionChunk): void {
    const n = chunk.rewards.length;
    const checks: Array<[string, number, number]> = [
      ['observations', chunk.observations.length, n * this.obsDim],
      ['actions', chunk.actions.length, n * this.actDim],
      ['nextObservations', chunk.nextObservations.length, n * this.obsDim],
      ['terminals', chunk.terminals.length, n],
      ['timeouts', chunk.timeouts.length, n],
      ['envIndex', chunk.envIndex.length, n],
    ];
    for (const [key, got, want] of checks) {
      if (got !== want) throw new Error(`TransitionLog.append: '${key}' has ${got} values for ${n} rows; expected ${want}`);
    }
    const hasPhysics = chunk.qpos !== undefined && chunk.qvel !== undefined;
    if (!this.physicsDecided) {
      this.physicsDecided = true;
      if (hasPhysics && n > 0) {
        this.qpos = new GrowingColumn(Float32Array, chunk.qpos!.length / n);
        this.qvel = new GrowingColumn(Float32Array, chunk.qvel!.length / n);
      }
    } else if (hasPhysics !== (this.qpos !== null)) {
      throw new Error('TransitionLog.append: some chunks carry qpos/qvel and others do not');
    }
    const rows = this.count;
    this.obs.append(chunk.observations, rows, n);
    this.act.append(chunk.actions, rows, n);
    this.rew.append(chunk.rewards, rows, n);
    this.next.append(chunk.nextObservations, rows, n);
    this.term.append(chunk.terminals, rows, n);
    this.tout.append(chunk.timeouts, rows, n);
    this.env.append(chunk.envIndex, rows, n);
    if (this.qpos && this.qvel) {
      if (chunk.qpos!.length !== n * this.qpos.width || chunk.qvel!.length !== n * this.qvel.width) {
        throw new Error(`TransitionLog.append: qpos/qvel widths changed (expected ${this.qpos.width}/${this.qvel.width} per row)`);
      }
      this.qpos.append(chunk.qpos!, rows, n);
      this.qvel.append(chunk.qvel!, rows, n);
    }
    this.count += n;
  }

  /** Views of the first `rows` rows (default all), in collection order; valid until the next append. */
  columns(rows = this.count): Required<Omit<TransitionChunk, 'qpos' | 'qvel'>> & Pick<TransitionChunk, 'qpos' | 'qvel'> {
    if (!Number.isInteger(rows) || rows < 0 || rows > this.count) throw new Error(`TransitionLog.columns: ${rows} rows asked for, ${this.count} logged`);
    return {
      observations: this.obs.view(rows),
      actions: this.act.view(rows),
      rewards: this.rew.view(rows),
      nextObservations: this.next.view(rows),
      terminals: this.term.view(rows),
      timeouts: this.tout.view(rows),
      envIndex: this.env.view(rows),
      ...(this.qpos && this.qvel ? { qpos: this.qpos.view(rows), qvel: this.qvel.view(rows) } : {}),
    };
  }
}

/** Simulator state per log row, in collection order: nq and nv values per row. */
export interface PhysicsColumns {
  qpos: Float32Array;
  qvel: Float32Array;
  nq: number;
  nv: number;
}

export interface EpisodeRows {
  data: D4RLData;
  /** order[i] = the log row that became row i of the data. */
  order: Int32Array;
  /** Episodes in the data, and how many of them the window cut (marked as timeouts on their last row). */
  episodes: number;
  cut: number;
  /** Undiscounted returns of the episodes that ended inside the window, in the data's order. */
  completeReturns: number[];
}

/**
 * The first `rows` logged transitions as D4RL rows: each environment copy's stream split into episodes at
 * terminals and timeouts, episodes ordered by the log row of their first step (ties cannot happen: one row
 * starts at most one episode) and laid out whole. An episode still running at the end of the window is kept
 * with a timeout on its last row (it was cut, not terminated). A row flagged both terminal and timeout counts
 * as terminal. `physics` supplies qpos/qvel per log row (in collection order) when the log has none.
 */
export function episodeRows(log: TransitionLog, rows = log.size, physics?: PhysicsColumns): EpisodeRows {
  const c = { ...log.columns(rows), ...(physics ? { qpos: physics.qpos.subarray(0, rows * physics.nq), qvel: physics.qvel.subarray(0, rows * physics.nv) } : {}) };
  const { obsDim, actDim } = log;
  const open = new Map<number, number[]>();
  const closed: Array<{ rows: number[]; cut: boolean }> = [];
  for (let i = 0; i < rows; i++) {
    const env = c.envIndex[i]!;
    let ep = open.get(env);
    if (!ep) {
      ep = [];
      open.set(env, ep);
    }
    ep.push(i);
    if (c.terminals[i] || c.timeouts[i]) {
      closed.push({ rows: ep, cut: false });
      open.delete(env);
    }
  }
  for (const ep of open.values()) closed.push({ rows: ep, cut: true });
  closed.sort((a, b) => a.rows[0]! - b.rows[0]!);

  const order = new Int32Array(rows);
  const data: D4RLData = {
    size: rows,
    obsDim,
    actDim,
    observations: new Float32Array(rows * obsDim),
    actions: new Float32Array(rows * actDim),
    rewards: new Float32Array(rows),
    terminals: new Uint8Array(rows),
    timeouts: new Uint8Array(rows),
    nextObservations: new Float32Array(rows * obsDim),
  };
  const nq = physics ? physics.nq : c.qpos ? c.qpos.length / Math.max(1, rows) : 0;
  const nv = physics ? physics.nv : c.qvel ? c.qvel.length / Math.max(1, rows) : 0;
  const qpos = c.qpos ? new Float32Array(rows * nq) : null;
  const qvel = c.qvel ? new Float32Array(rows * nv) : null;
  const completeReturns: number[] = [];
  let out = 0;
  let cut = 0;
  for (const ep of closed) {
    let ret = 0;
    for (const i of ep.rows) {
      order[out] = i;
      data.observations.set(c.observations.subarray(i * obsDim, (i + 1) * obsDim), out * obsDim);
      data.actions.set(c.actions.subarray(i * actDim, (i + 1) * actDim), out * actDim);
      data.nextObservations!.set(c.nextObservations.subarray(i * obsDim, (i + 1) * obsDim), out * obsDim);
      data.rewards[out] = c.rewards[i]!;
      data.terminals[out] = c.terminals[i] ? 1 : 0;
      data.timeouts[out] = c.timeouts[i] && !c.terminals[i] ? 1 : 0;
      if (qpos && qvel) {
        qpos.set(c.qpos!.subarray(i * nq, (i + 1) * nq), out * nq);
        qvel.set(c.qvel!.subarray(i * nv, (i + 1) * nv), out * nv);
      }
      ret += c.rewards[i]!;
      out++;
    }
    if (ep.cut) {
      data.timeouts[out - 1] = 1;
      cut++;
    } else {
      completeReturns.push(ret);
    }
  }
  if (qpos && qvel) data.infos = { qpos: { data: qpos, shape: [rows, nq] }, qvel: { data: qvel, shape: [rows, nv] } };
  return { data, order, episodes: closed.length, cut, completeReturns };
}

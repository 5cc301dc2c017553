// Matrix-product tuning kept in a file between runs: a training command calls prepareMatmulTuning() once
// the engine is started. It loads what earlier runs measured on this machine, spends a small budget timing
// shape classes still missing, and writes the merged results back, so tuning completes over a few start-ups
// and then costs nothing. The file lives in the OS cache directory unless WEBDIFFUSER_TUNING_CACHE names
// another path ('off' disables it).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { exportTuning, importTuning, tuneMatmul, tunedShapeClasses, type TuneReport } from '../../engine/tune.ts';

export const TUNING_CACHE_ENV = 'WEBDIFFUSER_TUNING_CACHE';

/** The cache file: $WEBDIFFUSER_TUNING_CACHE, else <OS cache dir>/webdiffuser/matmul-tuning.json; null when 'off'. */
export function tuningCachePath(env: Record<string, string | undefined> = process.env): string | null {
  const override = env[TUNING_CACHE_ENV];
  if (override === 'off' || override === '0') return null;
  if (override) return override;
  let base: string;
  if (process.platform === 'win32') base = env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local');
  else if (process.platform === 'darwin') base = join(homedir(), 'Library', 'Caches');
  else base = env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'webdiffuser', 'matmul-tuning.json');
}

export interface PrepareTuningOptions {
  /** Milliseconds to spend timing missing shape classes (default 1000; 0 only loads). */
  budgetMs?: number;
  /** Cache file (default tuningCachePath()); null: no file, tune in memory only. */
  path?: string | null;
  /** Progress and warnings (default: none). */
  log?: (line: string) => void;
}

export interface PrepareTuningResult {
  path: string | null;
  /** Shape classes with results for this adapter after loading and tuning. */
  classes: number;
  tuned: TuneReport | null;
}

function readCache(path: string, keepExisting: boolean, log?: (line: string) => void): void {
  if (!existsSync(path)) return;
  try {
    importTuning(readFileSync(path, 'utf8'), { keepExisting });
  } catch (e) {
    // A damaged cache is rewritten from fresh measurements, never a reason to stop a run.
    log?.(`matmul tuning cache ${path} ignored: ${(e as Error).message}`);
  }
}

/**
 * Writes the results held to the cache file (atomically), keeping classes another process stored there that
 * this one has not measured. Returns the path written, or null when there is none or writing failed.
 */
export function saveMatmulTuning(path: string | null = tuningCachePath(), log?: (line: string) => void): string | null {
  if (!path) return null;
  readCache(path, true, log);
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, exportTuning());
    renameSync(tmp, path);
    return path;
  } catch (e) {
    log?.(`matmul tuning cache ${path} not written: ${(e as Error).message}`);
    return null;
  }
}

/** Loads the cache, tunes missing shape classes within the budget, and saves the merged results. */
export async function prepareMatmulTuning(opts: PrepareTuningOptions = {}): Promise<PrepareTuningResult> {
  const path = opts.path === undefined ? tuningCachePath() : opts.path;
  const log = opts.log;
  if (path) readCache(path, false, log);
  const before = tunedShapeClasses().length;
  const budgetMs = opts.budgetMs ?? 1000;
  const tuned = budgetMs > 0 ? await tuneMatmul({ budgetMs, log }) : null;
  if (path && tuned && tuned.measured.length > 0) saveMatmulTuning(path, log);
  const classes = tunedShapeClasses().length;
  if (tuned && (tuned.measured.length > 0 || before === 0)) {
    log?.(
      `matmul tuning: ${classes} shape classes tuned (${tuned.measured.length} new; ${tuned.remaining.length} shapes left for later runs)` +
        (path ? `, cache ${path}` : ''),
    );
  }
  return { path, classes, tuned };
}

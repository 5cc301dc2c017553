// A command's declared command line: options parsed with util.parseArgs, --help written from the same
// declarations, errors meant for the person at the terminal, and the main-module entry point.
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';


export type OptionType = 'string' | 'number' | 'integer' | 'boolean';

export interface OptionSpec {
  type: OptionType;
  description: string;
  default?: string | number | boolean;
  short?: string;
  /** Allowed values of a string option. */
  choices?: readonly string[];
  /** Name of the value in --help (default: the type). */
  placeholder?: string;
  /** Numbers must be > 0 (integers >= 1). */
  positive?: boolean;
  /** Numbers must be >= 0. */
  nonNegative?: boolean;
}

export type OptionSpecs = Record<string, OptionSpec>;

type ValueOf<O extends OptionSpec> = O['type'] extends 'boolean' ? boolean : O['type'] extends 'string' ? string : number;

/** Parsed values: options with a default are always present, the rest may be undefined. */
export type CliValues<S extends OptionSpecs> = { [K in keyof S]: S[K] extends { default: string | number | boolean } ? ValueOf<S[K]> : ValueOf<S[K]> | undefined };

export interface CliSpec<S extends OptionSpecs> {
  /** e.g. 'node algorithms/srpo.ts [options]' */
  usage: string;
  /** Paragraph(s) printed under the usage line. */
  description: string;
  options: S;
  /** Lines printed at the end of --help under "Examples". */
  examples?: string[];
}

/** A command-line mistake: the message is for the person who typed it (no stack trace). */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

function wrap(text: string, width: number, indent: number): string[] {
  const words = text.split(/\s+/).filter((w) => w.length > 0);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line.length > 0 && line.length + 1 + w.length > width - indent) {
      lines.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines;
}

/** The --help text: usage, description, one entry per option (with its default and choices), examples. */
export function helpText<S extends OptionSpecs>(spec: CliSpec<S>, width = 100): string {
  const out: string[] = [`usage: ${spec.usage}`, ''];
  for (const para of spec.description.split(/\n\s*\n/)) out.push(...wrap(para, width, 0), '');
  out.push('Options:');
  const heads: [string, OptionSpec][] = Object.entries(spec.options).map(([name, o]) => {
    const value = o.type === 'boolean' ? '' : ` <${o.placeholder ?? (o.choices ? o.choices.join('|') : o.type)}>`;
    return [`${o.short ? `-${o.short}, ` : '    '}--${name}${value}`, o];
  });
  heads.push(['-h, --help', { type: 'boolean', description: 'print this help and exit' }]);
  const col = Math.min(34, Math.max(...heads.map(([h]) => h.length)) + 2);
  for (const [head, o] of heads) {
    let text = o.description;
    if (o.default !== undefined && o.type !== 'boolean') text += ` (default ${String(o.default)})`;
    const body = wrap(text, width, col + 2);
    const first = head.length + 2 <= col ? `  ${head.padEnd(col)}${body[0] ?? ''}` : `  ${head}`;
    out.push(first);
    const rest = head.length + 2 <= col ? body.slice(1) : body;
    for (const l of rest) out.push(' '.repeat(col + 2) + l);
  }
  if (spec.examples?.length) {
    out.push('', 'Examples:');
    for (const e of spec.examples) out.push(`  ${e}`);
  }
  return out.join('\n');
}

/** `--x -3` reads as an option followed by another option; for a numeric option it means `--x=-3`. */
function joinNegativeNumbers(options: OptionSpecs, argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = argv[i + 1];
    const spec = arg.startsWith('--') && !arg.includes('=') ? options[arg.slice(2)] : undefined;
    if (spec && (spec.type === 'number' || spec.type === 'integer') && next !== undefined && /^-(\d|\.\d|Infinity)/.test(next)) {
      out.push(`${arg}=${next}`);
      i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** The known name nearest to a mistyped one (edit distance at most a third of its length, at least 2), or null. */
function closestName(name: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestDistance) [best, bestDistance] = [k, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = row;
  }
  return prev[b.length]!;
}

/**
 * Parses argv against the declared options. Returns null when --help was asked for (after printing the help
 * to `print`); throws CliError naming the option for unknown options, missing values, bad numbers and values
 * outside `choices`.
 */
export function parseCli<S extends OptionSpecs>(
  spec: CliSpec<S>,
  argv: string[] = process.argv.slice(2),
  print: (text: string) => void = (t) => console.log(t),
): CliValues<S> | null {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  for (const [name, o] of Object.entries(spec.options)) {
    options[name] = { type: o.type === 'boolean' ? 'boolean' : 'string', ...(o.short ? { short: o.short } : {}) };
  }
  const names = Object.keys(options);
  for (const arg of argv) {
    if (arg === '--') break;
    if (!arg.startsWith('--')) continue;
    const name = arg.slice(2).split('=')[0]!;
    if (name && !(name in options)) {
      const near = closestName(name, names);
      throw new CliError(`unknown option --${name}${near ? `; did you mean --${near}?` : ''} (see --help)`);
    }
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    parsed = parseArgs({ args: joinNegativeNumbers(spec.options, argv), options, allowPositionals: true, strict: true }) as typeof parsed;
  } catch (err) {
    const msg = err instanceof Error ? err.message.replace(/^.*?: /, '') : String(err);
    throw new CliError(`${msg} (see --help)`);
  }
  if (parsed.values.help) {
    print(helpText(spec));
    return null;
  }
  if (parsed.positionals.length > 0) throw new CliError(`unexpected argument '${parsed.positionals[0]}' (options start with --; see --help)`);
  const out: Record<string, string | number | boolean | undefined> = {};
  for (const [name, o] of Object.entries(spec.options)) {
    const raw = parsed.values[name];
    if (raw === undefined) {
      out[name] = o.default;
      continue;
    }
    if (o.type === 'boolean') {
      out[name] = raw === true;
      continue;
    }
    const text = String(raw);
    if (o.type === 'string') {
      if (o.choices && !o.choices.includes(text)) throw new CliError(`--${name} must be one of ${o.choices.join(', ')}; got '${text}'`);
      out[name] = text;
      continue;
    }
    const v = Number(text);
    if (text.trim() === '' || !Number.isFinite(v)) throw new CliError(`--${name} needs a number, got '${text}'`);
    if (o.type === 'integer' && !Number.isInteger(v)) throw new CliError(`--${name} needs an integer, got '${text}'`);
    if (o.positive && !(v > 0)) throw new CliError(`--${name} must be positive, got ${text}`);
    if (o.nonNegative && !(v >= 0)) throw new CliError(`--${name} must be >= 0, got ${text}`);
    out[name] = v;
  }
  return out as CliValues<S>;
}

/**
 * Runs a command's main function: a CliError (or any error marked `userFacing`) prints its message alone,
 * anything else its stack; either sets a non-zero exit code.
 */
export async function runMain(name: string, main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (err) {
    if (err instanceof CliError || (err instanceof Error && (err as { userFacing?: boolean }).userFacing)) {
      console.error(`${name}: ${err.message}`);
    } else {
      console.error(`${name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    }
    if (!process.exitCode) process.exitCode = 1;
  }
}

/** Copies onto `target` each value the command line gave (undefined: the option was absent, keep the preset's). */
export function assignDefined<T extends object>(target: T, values: Partial<T>): T {
  for (const [k, v] of Object.entries(values)) if (v !== undefined) (target as Record<string, unknown>)[k] = v;
  return target;
}

/** True when the module at `moduleUrl` (import.meta.url) is the script Node was started with. */
export function isMainModule(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(fileURLToPath(moduleUrl)) === realpathSync(resolve(script));
  } catch {
    return false;
  }
}

/** An error whose message is for the person running the command (printed without a stack). */
export function userError(message: string): Error {
  const e = new Error(message);
  (e as { userFacing?: boolean }).userFacing = true;
  return e;
}

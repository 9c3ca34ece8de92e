/** The one report printer: JSON to stdout for --json, compact tables and findings for people. */
import type { Finding, Status } from '../core/findings.js';
import { usageError } from '../errors.js';

export interface GlobalFlags {
  json: boolean;
  quiet: boolean;
  verbose: boolean;
  slabMb: number;
}

const useColor = (): boolean => Boolean(process.stdout.isTTY) && !('NO_COLOR' in process.env) && process.env.TERM !== 'dumb';

function paint(code: number, text: string): string {
  return useColor() ? `\u001b[${code}m${text}\u001b[0m` : text;
}

export const color = {
  red: (t: string): string => paint(31, t),
  yellow: (t: string): string => paint(33, t),
  green: (t: string): string => paint(32, t),
  dim: (t: string): string => paint(2, t),
  bold: (t: string): string => paint(1, t),
};

export function statusText(status: Status): string {
  if (status === 'error') return color.red('error');
  if (status === 'warn') return color.yellow('warn');
  return color.green('ok');
}

// eslint-disable-next-line no-control-regex
const visibleLength = (s: string): number => s.replace(/\u001b\[\d+m/g, '').length;

/** Left-aligned columns separated by two spaces; numbers are right-aligned. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(visibleLength(h), ...rows.map((r) => visibleLength(r[i] ?? ''))));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.,]+%?$/.test(r[i] ?? '')));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => {
        const pad = ' '.repeat(widths[i]! - visibleLength(c));
        return numeric[i] ? pad + c : c + pad;
      })
      .join('  ')
      .trimEnd();
  return [color.bold(line(header)), ...rows.map(line)].join('\n');
}

export function findingLine(f: Finding, indent = '  '): string {
  const sev = f.severity === 'error' ? color.red('error') : f.severity === 'warning' ? color.yellow('warning') : color.dim('info');
  return `${indent}${sev} ${f.code}: ${f.message}`;
}

/** Findings worth showing: errors and warnings always, info only when verbose. */
export function visibleFindings(findings: readonly Finding[], verbose: boolean): Finding[] {
  return findings.filter((f) => verbose || f.severity !== 'info');
}

export const percent = (x: number): string => `${(100 * x).toFixed(1)}%`;
export const shape = (s: readonly number[]): string => `(${s.join(',')})`;

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLines(lines: string[]): void {
  if (lines.length) process.stdout.write(lines.join('\n') + '\n');
}

/** `--threads N` or `--threads auto` (train, predict). */
export function parseThreads(text: string): number | 'auto' {
  if (text === 'auto') return 'auto';
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw usageError(`--threads ${text} is not a positive integer`, "e.g. --threads 2, or --threads auto");
  return n;
}

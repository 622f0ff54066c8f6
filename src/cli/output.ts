/** Printing for CLI commands: plain text for people, `--json` for scripts. */
import { cliIo } from './io.js';

export interface OutputOptions {
  json?: boolean;
}

export function print(value: unknown, options: OutputOptions, text: () => string): void {
  cliIo().stdout(options.json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

export function table(rows: Record<string, string>[], columns: string[]): string {
  if (rows.length === 0) return '(none)';
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns.map((c) => c.toUpperCase())), ...rows.map((r) => line(columns.map((c) => r[c] ?? '')))].join('\n');
}

export function time(ms: number | null): string {
  return ms === null ? '-' : new Date(ms).toISOString();
}

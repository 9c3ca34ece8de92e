/** A progress bar on stderr, shown only on a terminal and never with --quiet or --json. */
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as CliProgress from 'cli-progress';
import type { ProgressEvent, ProgressFn } from '../ops/progress.js';

// cli-progress is loaded only when a bar is shown (a terminal, no --quiet/--json): every command
// creates a progress bar, and most runs (scripts, CI, --json) never draw one. require keeps this sync.
const requireCjs = createRequire(import.meta.url);

export interface ProgressBar {
  update: ProgressFn;
  stop(): void;
}

export function progressBar(opts: { quiet: boolean; json?: boolean; unit?: string }): ProgressBar {
  if (opts.quiet || !process.stderr.isTTY) return { update: () => {}, stop: () => {} };
  const cliProgress = requireCjs('cli-progress') as typeof CliProgress;
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `{label} [{bar}] {percentage}% | {value}/{total} ${opts.unit ?? ''} | ETA {eta_formatted}{extra}`,
      hideCursor: true,
      clearOnComplete: true,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  let current = '';
  return {
    update(e: ProgressEvent) {
      const label = path.basename(e.label);
      if (!started || label !== current) {
        if (started) bar.stop();
        bar.start(e.total, e.done, { label, extra: e.detail ? ` | ${e.detail}` : '' });
        started = true;
        current = label;
      } else {
        bar.setTotal(e.total);
        bar.update(e.done, { extra: e.detail ? ` | ${e.detail}` : '' });
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

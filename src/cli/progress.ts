/** A progress bar on stderr, shown only on a terminal and never with --quiet or --json. */
import cliProgress from 'cli-progress';
import path from 'node:path';
import type { ProgressEvent, ProgressFn } from '../ops/progress.js';

export interface ProgressBar {
  update: ProgressFn;
  stop(): void;
}

export function progressBar(opts: { quiet: boolean; json?: boolean; unit?: string }): ProgressBar {
  if (opts.quiet || !process.stderr.isTTY) return { update: () => {}, stop: () => {} };
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

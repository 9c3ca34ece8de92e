// Fallback peak-RSS probe when /usr/bin/time is missing: `node --import <this file> ...` writes the
// process's peak resident set size (KiB, from process.resourceUsage().maxRSS) to $BENCH_MAXRSS_FILE on exit.
import fs from 'node:fs';

const target = process.env.BENCH_MAXRSS_FILE;
if (target) {
  process.on('exit', () => {
    fs.writeFileSync(target, String(process.resourceUsage().maxRSS));
  });
}

// Fallback probe when /usr/bin/time is missing: `node --import <this file> ...` writes the process's peak
// resident set size (KiB, process.resourceUsage().maxRSS) and CPU seconds (user + system) to
// $BENCH_MAXRSS_FILE on exit, as "maxRSS cpuSeconds".
import fs from 'node:fs';

const target = process.env.BENCH_MAXRSS_FILE;
if (target) {
  process.on('exit', () => {
    const u = process.resourceUsage();
    fs.writeFileSync(target, `${u.maxRSS} ${(u.userCPUTime + u.systemCPUTime) / 1e6}`);
  });
}

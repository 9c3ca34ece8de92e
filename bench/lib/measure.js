// Timing whole processes: wall-clock seconds around the child; peak RSS and CPU seconds (user + system,
// all threads) from GNU time (`/usr/bin/time -v`) or, when that is missing, from a probe inside the child
// (maxrss.mjs for node, maxrss.py for python).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
export const PYTHON = '/usr/bin/python3';
const GNU_TIME = '/usr/bin/time';

/** 'gnu-time' when /usr/bin/time -v works, else 'probe' (forced by BENCH_RSS_PROBE=1, to test that path). */
export function rssMethod() {
  if (process.env.BENCH_RSS_PROBE === '1' || !fs.existsSync(GNU_TIME)) return 'probe';
  const r = spawnSync(GNU_TIME, ['-v', 'true'], { encoding: 'utf8' });
  return r.status === 0 && /Maximum resident set size/.test(r.stderr) ? 'gnu-time' : 'probe';
}

let scratch = null;
function scratchFile(name) {
  scratch ??= fs.mkdtempSync(path.join(os.tmpdir(), 'lazylabel-bench-rss-'));
  return path.join(scratch, name);
}

export function cleanupScratch() {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = null;
}

/**
 * Run `argv` (argv[0] is 'node' or PYTHON) to completion. Returns { seconds, cpuSeconds, rssMiB, code, stdout, stderr }.
 * `method` is rssMethod()'s answer.
 */
export function runMeasured(argv, { cwd, method, env } = {}) {
  const isNode = argv[0] === 'node';
  if (isNode) argv = [process.execPath, ...argv.slice(1)];
  const rssFile = scratchFile(`rss-${process.pid}-${Math.random().toString(36).slice(2)}`);
  let cmd;
  let args;
  const childEnv = { ...process.env, ...env };
  if (method === 'gnu-time') {
    cmd = GNU_TIME;
    args = ['-v', '-o', rssFile, ...argv];
  } else if (isNode) {
    cmd = process.execPath;
    args = ['--import', path.join(here, 'maxrss.mjs'), ...argv.slice(1)];
    childEnv.BENCH_MAXRSS_FILE = rssFile;
  } else {
    cmd = argv[0];
    args = [path.join(here, 'maxrss.py'), rssFile, ...argv.slice(1)];
  }
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = [];
    const err = [];
    child.stdout.on('data', (d) => out.push(d));
    child.stderr.on('data', (d) => err.push(d));
    child.on('error', reject);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      let rssKiB = null;
      let cpuSeconds = null;
      try {
        const text = fs.readFileSync(rssFile, 'utf8');
        const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(text);
        if (m) {
          rssKiB = Number(m[1]);
          const user = /User time \(seconds\): ([\d.]+)/.exec(text);
          const sys = /System time \(seconds\): ([\d.]+)/.exec(text);
          if (user && sys) cpuSeconds = Number(user[1]) + Number(sys[1]);
        } else {
          const [rss, cpu] = text.trim().split(/\s+/).map(Number);
          rssKiB = rss || null;
          cpuSeconds = Number.isFinite(cpu) ? cpu : null;
        }
        // GNU time reports "Command exited with non-zero status N" in the file too; the exit code comes from close
      } catch {
        // no file: the child died before writing it
      }
      fs.rmSync(rssFile, { force: true });
      resolve({ seconds, cpuSeconds, rssMiB: rssKiB === null ? null : rssKiB / 1024, code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

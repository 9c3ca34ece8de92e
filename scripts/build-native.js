#!/usr/bin/env node
// Builds native/ (oneDNN convolutions for the wasm trainer) with node-gyp where oneDNN is installed
// (Debian/Ubuntu: `apt-get install libdnnl-dev`). Runs as the package's install script, where it never
// fails the install: without oneDNN, or when the build fails, training uses the wasm kernels and
// `lazylabel train` says so. `npm run build:native` (--required) fails loudly instead.
//   LAZYLABEL_SKIP_NATIVE=1   skip the build
//   CPATH / LIBRARY_PATH      where gcc finds a oneDNN installed outside /usr (e.g. from Intel's packages)
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = path.join(root, 'native');
const required = process.argv.includes('--required');
const say = (m) => console.error(`lazylabel: ${m}`);

function giveUp(message) {
  if (required) {
    say(message);
    process.exit(1);
  }
  say(`${message}; training will use the wasm convolutions (slower). Run \`npm run build:native\` after fixing it.`);
  process.exit(0);
}

if (process.env.LAZYLABEL_SKIP_NATIVE === '1') {
  say('LAZYLABEL_SKIP_NATIVE=1: not building the oneDNN addon');
  process.exit(0);
}
if (!fs.existsSync(path.join(nativeDir, 'binding.gyp'))) process.exit(0); // not shipped in this copy

/** oneDNN's C++ header in the system include dirs or any CPATH entry. */
function findDnnlHeader() {
  const dirs = ['/usr/include', '/usr/local/include', ...(process.env.CPATH ?? '').split(':').filter(Boolean)];
  return dirs.find((d) => fs.existsSync(path.join(d, 'dnnl.hpp')) || fs.existsSync(path.join(d, 'oneapi', 'dnnl', 'dnnl.hpp'))) ?? null;
}

/** node-gyp: npm's own copy (npm passes its path to lifecycle scripts), else the one next to this node's npm. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  return candidates.find((c) => c && fs.existsSync(c)) ?? null;
}

/** Node's own headers (installed with node by most distributions): building against them needs no download. */
function localNodeDir() {
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  return fs.existsSync(path.join(prefix, 'include', 'node', 'node_api.h')) ? prefix : null;
}

if (!findDnnlHeader()) giveUp('oneDNN (dnnl.hpp) not found, so the native convolutions are not built (Debian/Ubuntu: apt-get install libdnnl-dev)');
const gyp = findNodeGyp();
if (!gyp) giveUp('node-gyp not found, so the native convolutions are not built');
const nodedir = localNodeDir();
const args = [gyp, 'rebuild', '--directory', nativeDir, ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
const t0 = Date.now();
const r = spawnSync(process.execPath, args, { cwd: nativeDir, encoding: 'utf8', maxBuffer: 64 << 20 });
if (r.status !== 0) {
  const log = `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').filter((l) => !l.startsWith('gyp info')).slice(-25).join('\n');
  console.error(log);
  giveUp(`building the oneDNN addon failed (node-gyp exit ${r.status ?? r.signal})`);
}
const built = path.join(nativeDir, 'build', 'Release', 'lazylabel_dnnl.node');
if (!fs.existsSync(built)) giveUp(`node-gyp finished but ${built} is missing`);
say(`built the oneDNN convolutions (${path.relative(root, built)}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);

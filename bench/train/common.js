// Shared pieces of the trainer benchmark: the reference nets (bench/nets.md), the synthetic batch, and
// CPU-usage sampling (how much of the machine other processes used while we measured).
import fs from 'node:fs';
import os from 'node:os';

/**
 * The reference nets of bench/nets.md. `patch` is spatial only, in (z,) y, x order; tfjs gets
 * [batch, ...patch, inChannels] (channels last), PyTorch [batch, inChannels, ...patch].
 */
export const NETS = {
  net2d: { dims: 2, nLab: 3, inChannels: 1, depth: 3, baseFilters: 16, patch: [128, 128], batch: 4 },
  net3d: { dims: 3, nLab: 3, inChannels: 1, depth: 2, baseFilters: 16, anisotropicLevels: 1, patch: [16, 64, 64], batch: 2 },
};

/** buildUNet config of a net (seeded so every run starts from the same weights). */
export function unetConfig(net) {
  const { dims, nLab, inChannels, depth, baseFilters } = net;
  return { dims, nLab, inChannels, depth, baseFilters, ...(net.anisotropicLevels ? { anisotropicLevels: net.anisotropicLevels } : {}), seed: 1 };
}

/** mulberry32: tiny seeded PRNG, uniform in [0, 1). */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The synthetic batch (same recipe as torch_ref.py make_batch): raw ~ N(0, 1); even examples fully
 * labelled (classes 0..n-1), odd examples lazily labelled (only classes 0..n-2 occur, the last class
 * is not labelled and flagged not present); 10% of all voxels are -1 (unlabelled).
 */
export function makeBatch(net, batch, seed = 1) {
  const r = rng(seed);
  const vox = net.patch.reduce((a, b) => a * b, 1);
  const raw = new Float32Array(batch * vox * net.inChannels);
  for (let i = 0; i < raw.length; i += 2) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u));
    raw[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < raw.length) raw[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  const labels = new Int32Array(batch * vox);
  const maskClassLabeled = [];
  const maskClassNotPresent = [];
  for (let b = 0; b < batch; b++) {
    const lazy = b % 2 === 1;
    const nOccur = lazy ? net.nLab - 1 : net.nLab;
    for (let v = 0; v < vox; v++) labels[b * vox + v] = r() < 0.1 ? -1 : Math.floor(r() * nOccur);
    maskClassLabeled.push(Array.from({ length: net.nLab }, (_, c) => (lazy && c === net.nLab - 1 ? 0 : 1)));
    maskClassNotPresent.push(Array.from({ length: net.nLab }, (_, c) => (lazy && c === net.nLab - 1 ? 1 : 0)));
  }
  return { raw, labels, maskClassLabeled, maskClassNotPresent };
}

/** Busy CPU seconds of the whole machine since boot (all cores), from /proc/stat; null if unreadable. */
function machineBusySeconds() {
  try {
    const v = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
    return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] ?? 0)) / 100; // USER_HZ is 100 on Linux
  } catch {
    return null;
  }
}

/** Snapshot for cpuStats: wall time, this process's CPU time (all threads), machine busy time. */
export function cpuSnapshot() {
  const u = process.cpuUsage();
  return { wall: performance.now() / 1e3, own: (u.user + u.system) / 1e6, busy: machineBusySeconds() };
}

/** Average cores used between two snapshots: by us, by the machine, and by everything else. */
export function cpuStats(a, b) {
  const wall = b.wall - a.wall;
  const own = (b.own - a.own) / wall;
  const machine = a.busy === null || b.busy === null ? null : (b.busy - a.busy) / wall;
  const r3 = (x) => Math.round(x * 1000) / 1000;
  return {
    wallS: r3(wall),
    ownCores: r3(own),
    machineBusyCores: machine === null ? null : r3(machine),
    otherCores: machine === null ? null : r3(Math.max(0, machine - own)),
    loadavg: os.loadavg(),
  };
}

export function summary(ms) {
  const s = [...ms].sort((p, q) => p - q);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1], p90: s[Math.min(s.length - 1, Math.round(0.9 * (s.length - 1)))], n: s.length, all: ms.map((t) => Math.round(t * 100) / 100) };
}

/** Busy cores of the machine over `ms` milliseconds (we are idle meanwhile, so this is everyone else). */
export async function sampleBusyCores(ms = 2000) {
  const a = cpuSnapshot();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuSnapshot();
  return cpuStats(a, b).machineBusyCores;
}

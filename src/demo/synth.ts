/**
 * Synthetic EM-like cubes for the demo: textured cytoplasm, mitochondria (class 1), vesicle clouds
 * (class 2, clusters of small dark vesicles) and large nuclei whose granular chromatin resembles
 * vesicle clouds — the look-alike that makes densely trained networks fire false positives.
 */
import { Rng } from '../train/rng.js';

export const DEMO_CLASSES = ['background', 'mitochondrion', 'vesicle_cloud'] as const;

export interface SynthCube {
  shape: [number, number, number];
  raw: Uint8Array;
  /** Dense ground truth 0..2 (nuclei are background). */
  labels: Int16Array;
  /** 1 inside nuclei. */
  nucleus: Uint8Array;
}

export interface SynthSpec {
  shape: [number, number, number];
  mitochondria: number;
  vesicleClouds: number;
  nuclei: number;
  seed: number;
}

/** Smooth value noise: random values on a coarse grid, trilinearly interpolated. */
function valueNoise(shape: [number, number, number], cell: [number, number, number], rng: Rng): Float32Array {
  const [Z, Y, X] = shape;
  const gz = Math.ceil(Z / cell[0]) + 2;
  const gy = Math.ceil(Y / cell[1]) + 2;
  const gx = Math.ceil(X / cell[2]) + 2;
  const grid = Float32Array.from({ length: gz * gy * gx }, () => rng.uniform(-1, 1));
  const out = new Float32Array(Z * Y * X);
  for (let z = 0; z < Z; z++) {
    const fz = z / cell[0];
    const z0 = Math.floor(fz);
    const tz = fz - z0;
    for (let y = 0; y < Y; y++) {
      const fy = y / cell[1];
      const y0 = Math.floor(fy);
      const ty = fy - y0;
      for (let x = 0; x < X; x++) {
        const fx = x / cell[2];
        const x0 = Math.floor(fx);
        const tx = fx - x0;
        let v = 0;
        for (let dz = 0; dz < 2; dz++)
          for (let dy = 0; dy < 2; dy++)
            for (let dx = 0; dx < 2; dx++) {
              const w = (dz ? tz : 1 - tz) * (dy ? ty : 1 - ty) * (dx ? tx : 1 - tx);
              v += w * grid[((z0 + dz) * gy + (y0 + dy)) * gx + (x0 + dx)]!;
            }
        out[(z * Y + y) * X + x] = v;
      }
    }
  }
  return out;
}

interface Blob {
  c: [number, number, number];
  r: [number, number, number];
}

const inside = (b: Blob, z: number, y: number, x: number): number =>
  ((z - b.c[0]) / b.r[0]) ** 2 + ((y - b.c[1]) / b.r[1]) ** 2 + ((x - b.c[2]) / b.r[2]) ** 2;

/** Stamp dark dots ("vesicles" or "chromatin granules") of radius `radius` with spacing ~`spacing` inside a region. */
function stampDots(img: Float32Array, shape: [number, number, number], region: (z: number, y: number, x: number) => boolean, spacing: number, radius: number, depth: number, rng: Rng, box: [number, number, number, number, number, number]): void {
  const [Z, Y, X] = shape;
  const [z0, z1, y0, y1, x0, x1] = box;
  const zStep = Math.max(1, spacing / 3); // anisotropic EM: sections are thick, so dots span fewer z
  for (let z = z0; z < z1; z += zStep) {
    for (let y = y0; y < y1; y += spacing) {
      for (let x = x0; x < x1; x += spacing) {
        const cz = z + rng.uniform(0, zStep);
        const cy = y + rng.uniform(0, spacing);
        const cx = x + rng.uniform(0, spacing);
        if (!region(Math.round(cz), Math.round(cy), Math.round(cx))) continue;
        const r = radius * rng.uniform(0.8, 1.2);
        for (let dz = -1; dz <= 1; dz++) {
          const zz = Math.round(cz) + dz;
          if (zz < 0 || zz >= Z) continue;
          for (let dy = -Math.ceil(r) - 1; dy <= Math.ceil(r) + 1; dy++) {
            for (let dx = -Math.ceil(r) - 1; dx <= Math.ceil(r) + 1; dx++) {
              const yy = Math.round(cy) + dy;
              const xx = Math.round(cx) + dx;
              if (yy < 0 || yy >= Y || xx < 0 || xx >= X) continue;
              const d = Math.sqrt((yy - cy) ** 2 + (xx - cx) ** 2 + (dz * 2) ** 2);
              // a dark ring with a lighter lumen, like a vesicle membrane in EM
              const ring = Math.exp(-((d - r) ** 2) / 0.5);
              img[(zz * Y + yy) * X + xx]! -= depth * ring;
            }
          }
        }
      }
    }
  }
}

/** One cube. Deterministic in `spec.seed`. */
export function synthCube(spec: SynthSpec): SynthCube {
  const rng = new Rng(spec.seed);
  const shape = spec.shape;
  const [Z, Y, X] = shape;
  const n = Z * Y * X;
  const coarse = valueNoise(shape, [4, 24, 24], rng);
  const fine = valueNoise(shape, [2, 4, 4], rng);
  const img = new Float32Array(n);
  for (let i = 0; i < n; i++) img[i] = 150 + 18 * coarse[i]! + 8 * fine[i]!;
  const labels = new Int16Array(n);
  const nucleus = new Uint8Array(n);
  const place = (rMin: number, rMax: number, zScale: number): Blob => {
    const r = rng.uniform(rMin, rMax);
    return {
      c: [rng.uniform(0, Z), rng.uniform(r * 0.5, Y - r * 0.5), rng.uniform(r * 0.5, X - r * 0.5)],
      r: [Math.max(2, r * zScale), r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.15)],
    };
  };
  const fill = (b: Blob, fn: (i: number, q: number) => void): void => {
    const z0 = Math.max(0, Math.floor(b.c[0] - b.r[0]));
    const z1 = Math.min(Z, Math.ceil(b.c[0] + b.r[0]) + 1);
    const y0 = Math.max(0, Math.floor(b.c[1] - b.r[1]));
    const y1 = Math.min(Y, Math.ceil(b.c[1] + b.r[1]) + 1);
    const x0 = Math.max(0, Math.floor(b.c[2] - b.r[2]));
    const x1 = Math.min(X, Math.ceil(b.c[2] + b.r[2]) + 1);
    for (let z = z0; z < z1; z++) for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) {
      const q = inside(b, z, y, x);
      if (q <= 1.15) fn((z * Y + y) * X + x, q);
    }
  };
  const bbox = (b: Blob): [number, number, number, number, number, number] => [
    Math.max(0, Math.floor(b.c[0] - b.r[0])), Math.min(Z, Math.ceil(b.c[0] + b.r[0]) + 1),
    Math.max(0, Math.floor(b.c[1] - b.r[1])), Math.min(Y, Math.ceil(b.c[1] + b.r[1]) + 1),
    Math.max(0, Math.floor(b.c[2] - b.r[2])), Math.min(X, Math.ceil(b.c[2] + b.r[2]) + 1),
  ];

  // Nuclei: slightly lighter nucleoplasm, a dark double envelope, dense small chromatin granules.
  for (let k = 0; k < spec.nuclei; k++) {
    const b = place(Math.min(Y, X) * 0.28, Math.min(Y, X) * 0.38, 0.35);
    fill(b, (i, q) => {
      if (q <= 1) {
        nucleus[i] = 1;
        img[i] = img[i]! + 12;
      }
      if (q > 0.86 && q <= 1.0) img[i] = img[i]! - 45;
    });
    const region = (zz: number, yy: number, xx: number): boolean => zz >= 0 && zz < Z && yy >= 0 && yy < Y && xx >= 0 && xx < X && inside(b, zz, yy, xx) < 0.8;
    stampDots(img, shape, region, 4.5, 1.2, 40, rng, bbox(b));
  }
  // Mitochondria: dark elongated bodies with a darker membrane and cristae stripes.
  for (let k = 0; k < spec.mitochondria; k++) {
    const b = place(4, 7, 0.6);
    b.r[2] *= rng.uniform(1.6, 2.4);
    fill(b, (i, q) => {
      if (q > 1) return;
      if (nucleus[i]) return;
      labels[i] = 1;
      const x = i % X;
      img[i] = 85 + 10 * Math.sin(x * 1.3) - (q > 0.7 ? 30 : 0);
    });
  }
  // Vesicle clouds: a cluster region of vesicles (dark rings) on a light background.
  for (let k = 0; k < spec.vesicleClouds; k++) {
    const b = place(7, 11, 0.5);
    const region = (zz: number, yy: number, xx: number): boolean =>
      zz >= 0 && zz < Z && yy >= 0 && yy < Y && xx >= 0 && xx < X && inside(b, zz, yy, xx) <= 1 && labels[(zz * Y + yy) * X + xx] === 2;
    fill(b, (i, q) => {
      if (q <= 1 && !nucleus[i] && labels[i] === 0) {
        labels[i] = 2;
        img[i] = img[i]! + 10;
      }
    });
    stampDots(img, shape, region, 4, 1.6, 50, rng, bbox(b));
  }
  const raw = new Uint8Array(n);
  for (let i = 0; i < n; i++) raw[i] = Math.max(0, Math.min(255, Math.round(img[i]! + rng.uniform(-6, 6))));
  return { shape, raw, labels, nucleus };
}

// Seeded synthetic EM-like label scenes, rendered row by row (rows = first axis) so that a volume of any
// size can be generated slab by slab without holding it.
//
// A scene has
//   - class 1 "mitochondria": many small ellipsoids (small objects),
//   - class 2 "vesicle clouds": fewer medium ellipsoids (only in the dense class volume; the label
//     volume flags class 2 as not present, the lazy-label convention for a cube without it),
//   - ignore areas: a few big ellipsoids ("nuclei left unlabelled") and a half-space behind a slanted
//     plane ("the annotator stopped here"); -1 in the labels, 0 in the mask.
// Background (class 0) is everything else: large constant regions, which is what lazily labelled
// volumes look like and why gzip compresses them well.

/** mulberry32: a tiny, fast, seedable PRNG returning floats in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const between = (r, lo, hi) => lo + (hi - lo) * r();

function ellipsoids(r, shape, count, rmin, rmax) {
  const [X, Y, Z] = shape;
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push({
      cx: r() * X, cy: r() * Y, cz: r() * Z,
      rx: between(r, rmin, rmax), ry: between(r, rmin, rmax), rz: between(r, rmin, rmax),
    });
  }
  return out;
}

/** Index objects by the rows they touch, so rendering a row looks at the objects of that row only. */
function byRow(objects, X) {
  const rows = Array.from({ length: X }, () => []);
  for (const o of objects) {
    const x0 = Math.max(0, Math.ceil(o.cx - o.rx));
    const x1 = Math.min(X - 1, Math.floor(o.cx + o.rx));
    for (let x = x0; x <= x1; x++) rows[x].push(o);
  }
  return rows;
}

/**
 * A scene for a volume of `shape` (3-D, x y z). Options scale the object counts:
 * `mito` and `clouds` are voxels per object, `ignoreBlobs` how many big ignore ellipsoids,
 * `plane` whether to cut a slanted half-space of ignore.
 */
export function makeScene(shape, seed, opts = {}) {
  const { mito = 60_000, clouds = 400_000, ignoreBlobs = 3, plane = true } = opts;
  const [X, Y, Z] = shape;
  const voxels = X * Y * Z;
  const r = rng(seed);
  const small = Math.max(2, Math.min(X, Y, Z) / 40);
  const mitos = ellipsoids(r, shape, Math.round(voxels / mito), small, 3 * small);
  const cloudObjs = clouds > 0 ? ellipsoids(r, shape, Math.round(voxels / clouds), 2 * small, 5 * small) : [];
  const m = Math.min(X, Y, Z);
  const blobs = ellipsoids(r, shape, ignoreBlobs, 0.15 * m, 0.28 * m);
  return {
    shape: [X, Y, Z],
    mitoRows: byRow(mitos, X),
    cloudRows: byRow(cloudObjs, X),
    blobRows: byRow(blobs, X),
    // ignore where 0.6 x/X + 0.5 y/Y + 0.4 z/Z > 0.95 (about a fifth of the volume)
    plane: plane ? { a: 0.6, b: 0.5, c: 0.4, d: 0.95 } : null,
    counts: { mitos: mitos.length, clouds: cloudObjs.length, blobs: blobs.length },
  };
}

/** Paint the cross-section of ellipsoid `o` at row x into `buf` (one row of Y*Z values at `base`). */
function paint(buf, base, o, x, Y, Z, value) {
  const dx = (x - o.cx) / o.rx;
  const s = 1 - dx * dx;
  if (s <= 0) return;
  const hy = o.ry * Math.sqrt(s);
  const y0 = Math.max(0, Math.ceil(o.cy - hy));
  const y1 = Math.min(Y - 1, Math.floor(o.cy + hy));
  for (let y = y0; y <= y1; y++) {
    const dy = (y - o.cy) / o.ry;
    const t = s - dy * dy;
    if (t <= 0) continue;
    const hz = o.rz * Math.sqrt(t);
    const z0 = Math.max(0, Math.ceil(o.cz - hz));
    const z1 = Math.min(Z - 1, Math.floor(o.cz + hz));
    if (z0 <= z1) buf.fill(value, base + y * Z + z0, base + y * Z + z1 + 1);
  }
}

/** Ignore spans of row x: the big blobs and the half-space behind the plane. */
function paintIgnore(scene, buf, base, x, value) {
  const [X, Y, Z] = scene.shape;
  for (const o of scene.blobRows[x]) paint(buf, base, o, x, Y, Z, value);
  const p = scene.plane;
  if (p) {
    for (let y = 0; y < Y; y++) {
      // z/Z > (d - a x/X - b y/Y) / c
      const zc = Math.ceil((Z * (p.d - (p.a * x) / X - (p.b * y) / Y)) / p.c);
      const z0 = Math.max(0, zc);
      if (z0 < Z) buf.fill(value, base + y * Z + z0, base + y * Z + Z);
    }
  }
}

/**
 * Render rows [x0, x1) into any of the given buffers (each sized (x1-x0)*Y*Z):
 *   lab   Int16Array: -1 ignore, 0 background, 1 mito (no class 2: flagged not present)
 *   cls   Uint8Array: dense classes 0/1/2 everywhere (what a coarse automatic segmentation gives)
 *   mask  Uint8Array: 1 where annotated, 0 in the ignore areas
 *   raw   Uint8Array: grey values by class plus noise
 *   dense Int16Array: classes 0/1/2 with no ignore at all (a densely labelled cube)
 */
export function renderRows(scene, x0, x1, bufs) {
  const [, Y, Z] = scene.shape;
  const row = Y * Z;
  const { lab, cls, mask, raw, dense } = bufs;
  for (let x = x0; x < x1; x++) {
    const base = (x - x0) * row;
    if (lab) {
      lab.fill(0, base, base + row);
      for (const o of scene.mitoRows[x]) paint(lab, base, o, x, Y, Z, 1);
      paintIgnore(scene, lab, base, x, -1);
    }
    for (const dst of [cls, dense]) {
      if (!dst) continue;
      dst.fill(0, base, base + row);
      for (const o of scene.cloudRows[x]) paint(dst, base, o, x, Y, Z, 2);
      for (const o of scene.mitoRows[x]) paint(dst, base, o, x, Y, Z, 1);
    }
    if (mask) {
      mask.fill(1, base, base + row);
      paintIgnore(scene, mask, base, x, 0);
    }
  }
  if (raw) {
    // grey value by class (cls when rendered, else lab) plus noise from a fixed table
    const src = cls ?? dense ?? lab;
    const grey = new Uint8Array(256);
    grey[0] = 170; grey[1] = 80; grey[2] = 120; grey[255] = 170; // 255 = -1 viewed as uint8
    const noise = NOISE;
    const n = (x1 - x0) * row;
    let k = (x0 * 7919) & 65535;
    for (let i = 0; i < n; i++) {
      raw[i] = grey[src[i] & 255] + noise[k];
      k = (k + 1) & 65535;
    }
  }
}

const NOISE = (() => {
  const r = rng(12345);
  const t = new Uint8Array(65536);
  for (let i = 0; i < t.length; i++) t[i] = Math.floor(r() * 40);
  return t;
})();

/** `preview`: pixel colours (class blend, ignore style, invalid values), legend text, layout sizes, slice-only reads, CLI and JSON schema. */
import fs from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { H5Source, withH5 } from '../src/io/hdf5.js';
import {
  classColor,
  composePreview,
  IGNORE_STYLE,
  INVALID_COLOR,
  NO_RAW_GREY,
  onHatch,
  OVERLAY_ALPHA,
  renderPreview,
  sliceIndices,
  type RenderedPreview,
} from '../src/report/preview.js';
import { drawText, glyphPixel, LINE_HEIGHT, textWidth } from '../src/report/font.js';
import { createImage } from '../src/io/png.js';
import { fixture, runCli, schemaErrors, tmpDir } from './helpers.js';

const TEXT: [number, number, number] = [20, 20, 20];

const px = (img: { width: number; rgb: Uint8Array }, x: number, y: number): number[] => Array.from(img.rgb.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3));
const blend = (c: readonly number[], g: number, a: number): number[] => c.map((v) => Math.round(a * v + (1 - a) * g));

/** Whole volume as a flat array with its shape. */
async function readVolume(file: string, key: string): Promise<{ shape: number[]; data: ArrayLike<number> }> {
  return withH5(file, (src) => {
    const shape = src.info(key).shape;
    return { shape, data: src.readBox(key, shape.map(() => 0), shape) };
  });
}

/** The pixels of voxel (row, col) of panel p: an off-hatch pixel and an on-hatch one, in image coordinates. */
function voxelPixels(img: RenderedPreview, p: number, row: number, col: number): { off: [number, number]; on: [number, number] } {
  const panel = img.layout.panels[p]!;
  const z = img.layout.zoom;
  let off: [number, number] | null = null;
  let on: [number, number] | null = null;
  for (let dy = 0; dy < z; dy++) {
    for (let dx = 0; dx < z; dx++) {
      const lx = col * z + dx;
      const ly = row * z + dy;
      if (onHatch(lx, ly)) on ??= [panel.x + lx, panel.y + ly];
      else off ??= [panel.x + lx, panel.y + ly];
    }
  }
  return { off: off!, on: on! };
}

describe('5x7 font', () => {
  it('draws known glyph pixels and measures text', () => {
    // 'I' is a vertical bar in column 2 with serifs at the top and bottom rows
    for (let r = 0; r < 7; r++) expect(glyphPixel('I', 2, r)).toBe(true);
    expect(glyphPixel('I', 0, 3)).toBe(false);
    expect(glyphPixel(' ', 2, 3)).toBe(false);
    expect(textWidth('abc', 2)).toBe((3 * 6 - 1) * 2);
    const img = createImage(40, LINE_HEIGHT * 2);
    drawText(img, 'Hi', 1, 1, [0, 0, 0], 2);
    let dark = 0;
    for (let i = 0; i < img.width * img.height; i++) if (img.rgb[i * 3] === 0) dark++;
    // H: 7+7+3 pixels, i: 6 pixels (dot + stem), each 2x2
    expect(dark).toBeGreaterThan(40);
  });
});

describe('renderPreview pixels', () => {
  afterEach(() => vi.restoreAllMocks());

  it('blends class colours with the raw value and styles ignored voxels (manifest cube with offset)', async () => {
    const labels = await readVolume(fixture('preview', 'offset_labels.h5'), 'lab');
    const raw = await readVolume(fixture('preview', 'offset_raw.h5'), 'raw');
    const offset = [1, 3, 4];
    const img = await renderPreview({
      name: 'shifted',
      label: { file: fixture('preview', 'offset_labels.h5'), key: 'lab' },
      raw: { file: fixture('preview', 'offset_raw.h5'), key: 'raw' },
      offset,
      nLab: 3,
      classNames: ['background', 'mito', 'vesicle_cloud'],
      slices: 2,
      size: 120,
    });
    expect(img.meta.indices).toEqual([1, 4]);
    const [X, Y, Z] = labels.shape as [number, number, number];
    const [, RY, RZ] = raw.shape as [number, number, number];
    const rawAt = (x: number, y: number, z: number): number => raw.data[(x + offset[0]!) * RY * RZ + (y + offset[1]!) * RZ + (z + offset[2]!)]!;
    let checked = { cls1: 0, cls0: 0, ignored: 0 };
    img.meta.indices.forEach((x, p) => {
      for (let y = 0; y < Y; y++) {
        for (let z = 0; z < Z; z++) {
          const l = labels.data[x! * Y * Z + y * Z + z]!;
          const g = rawAt(x!, y, z);
          const { off, on } = voxelPixels(img, p, y, z);
          if (l >= 0) {
            expect(px(img, ...off), `class ${l} at ${x},${y},${z}`).toEqual(blend(classColor(l), g, OVERLAY_ALPHA));
            expect(px(img, ...on)).toEqual(blend(classColor(l), g, OVERLAY_ALPHA));
            if (l === 1) checked.cls1++;
            else checked.cls0++;
          } else {
            const dim = Math.round(g * IGNORE_STYLE.dim);
            expect(px(img, ...off), `ignored at ${x},${y},${z}`).toEqual([dim, dim, dim]);
            expect(px(img, ...on)).toEqual(blend(IGNORE_STYLE.hatchColor, dim, IGNORE_STYLE.hatchAlpha));
            checked.ignored++;
          }
        }
      }
    });
    expect(checked.cls1).toBeGreaterThan(0);
    expect(checked.cls0).toBeGreaterThan(0);
    expect(checked.ignored).toBeGreaterThan(0);
    // the class colours differ from each other and from the ignore style
    const colours = [0, 1, 2].map((c) => classColor(c).join());
    expect(new Set(colours).size).toBe(3);
    expect(img.meta.info).toEqual({ labeled: [true, true, false], notPresent: [false, false, true], source: 'file' });
    expect(img.counts!.classVoxels[0]! + img.counts!.classVoxels[1]! + img.counts!.ignored).toBe(2 * Y * Z);
  });

  it('lays out the grid: image size follows the panels, captions and legend', async () => {
    const img = await renderPreview({
      label: { file: fixture('check', 'pair_labels.h5'), key: 'lab' },
      raw: { file: fixture('check', 'pair_raw_same.h5'), key: 'raw' },
      nLab: 3,
      size: 120,
      textScale: 1,
    });
    // (6,10,12): 4 slices along axis 0, each 10 x 12 voxels zoomed 10x (120 / 12)
    expect(img.meta.indices).toEqual(sliceIndices(6, 4));
    expect(img.meta.zoom).toBe(10);
    const pad = 8; // 4 + 4 * textScale
    expect(img.layout.panels.map((p) => [p.width, p.height])).toEqual(Array(4).fill([120, 100]));
    expect(img.layout.panels.map((p) => p.x)).toEqual([0, 1, 2, 3].map((i) => pad + i * (120 + pad)));
    expect(new Set(img.layout.panels.map((p) => p.y)).size).toBe(1);
    expect(img.layout.grid.width).toBe(4 * 120 + 3 * pad);
    expect(img.layout.grid.height).toBe(LINE_HEIGHT + 100);
    expect(img.width).toBe(2 * pad + Math.max(img.layout.grid.width, img.layout.legend.width));
    expect(img.height).toBe(img.layout.legend.y + img.layout.legend.height + pad);
    expect(img.rgb.length).toBe(img.width * img.height * 3);
    // 3 class lines, the ignore line, the "no info" note
    expect(img.layout.legend.height).toBe(5 * LINE_HEIGHT);

    // two columns: a 2 x 2 grid
    const grid = await renderPreview({ label: { file: fixture('check', 'pair_labels.h5'), key: 'lab' }, nLab: 3, size: 120, textScale: 1, columns: 2 });
    expect(grid.layout.grid.width).toBe(2 * 120 + pad);
    expect(grid.layout.grid.height).toBe(2 * (LINE_HEIGHT + 100) + pad);
    expect(grid.layout.panels[2]!.x).toBe(grid.layout.panels[0]!.x);
  });

  it('draws legend text and a class swatch in each legend line', async () => {
    const img = await renderPreview({ label: { file: fixture('check', 'lazy_all_ignore.h5'), key: 'lab' }, nLab: 3, classNames: ['bg', 'mito', 'nucleus'], textScale: 2 });
    const { x, y, width, height } = img.layout.legend;
    let text = 0;
    for (let yy = y; yy < y + height; yy++) for (let xx = x; xx < x + width; xx++) if (px(img, xx, yy).join() === TEXT.join()) text++;
    expect(text).toBeGreaterThan(500);
    // the swatch of class c in line c shows its colour over the no-raw grey
    for (let c = 0; c < 3; c++) expect(px(img, x + 3, y + c * LINE_HEIGHT * 2 + 3)).toEqual(blend(classColor(c), NO_RAW_GREY, OVERLAY_ALPHA));
    // outside the legend, left of the panels, there is no text
    expect(px(img, 1, img.layout.grid.y + 20)).toEqual([255, 255, 255]);
    // an all-ignore cube: every panel pixel has the ignore style, none a class colour
    const dim = Math.round(NO_RAW_GREY * IGNORE_STYLE.dim);
    const hatch = blend(IGNORE_STYLE.hatchColor, dim, IGNORE_STYLE.hatchAlpha).join();
    let wrong = 0;
    let pixels = 0;
    for (const p of img.layout.panels) {
      for (let yy = 0; yy < p.height; yy++) {
        for (let xx = 0; xx < p.width; xx++, pixels++) if (px(img, p.x + xx, p.y + yy).join() !== (onHatch(xx, yy) ? hatch : `${dim},${dim},${dim}`)) wrong++;
      }
    }
    expect(pixels).toBe(4 * 256 * 256);
    expect(wrong).toBe(0);
    expect(img.meta.nLab).toBe(3);
    expect(img.counts).toEqual({ classVoxels: [0, 0, 0], ignored: 4 * 16 * 16, outOfRange: 0, voxels: 4 * 16 * 16 });
  });

  it('reads only the shown slices, one voxel thick along the axis, within the slab budget', async () => {
    const boxes: { starts: number[]; ends: number[] }[] = [];
    const original = H5Source.prototype.readBox;
    vi.spyOn(H5Source.prototype, 'readBox').mockImplementation(function (this: H5Source, key: string, starts: number[], ends: number[]) {
      boxes.push({ starts: [...starts], ends: [...ends] });
      return original.call(this, key, starts, ends);
    });
    const readSlab = vi.spyOn(H5Source.prototype, 'readSlab');
    for (const axis of [0, 1, 2]) {
      boxes.length = 0;
      const img = await renderPreview({
        label: { file: fixture('check', 'dense3d_int16_chunked.h5'), key: 'lab' },
        raw: { file: fixture('check', 'dense3d_int16_chunked.h5'), key: 'raw' },
        nLab: 3,
        slices: 3,
        axis,
        size: 64,
      });
      expect(img.meta.indices).toEqual(sliceIndices([16, 20, 24][axis]!, 3));
      expect(boxes.length).toBeGreaterThanOrEqual(6);
      for (const b of boxes) {
        expect(b.ends[axis]! - b.starts[axis]!).toBe(1);
        expect(img.meta.indices).toContain(b.starts[axis]);
      }
    }
    // a tiny budget splits each slice into bands of rows; never more than one slice's worth at once
    boxes.length = 0;
    await renderPreview({ label: { file: fixture('check', 'dense3d_int16_chunked.h5'), key: 'lab' }, nLab: 3, slices: 1, slabMB: 0.0005 });
    expect(boxes.length).toBeGreaterThan(1);
    for (const b of boxes) expect((b.ends[1]! - b.starts[1]!) * 24).toBeLessThanOrEqual(0.0005 * 1024 * 1024);
    expect(readSlab).not.toHaveBeenCalled();
  });

  it('subsamples slices larger than the panel size', async () => {
    const img = await renderPreview({ label: { file: fixture('check', 'dense2d_uint8.h5'), key: 'lab' }, size: 10 });
    // (32, 40) > 10 px: every 4th voxel, 8 x 10 shown, zoom 1
    expect(img.meta.step).toBe(4);
    expect(img.meta.zoom).toBe(1);
    expect(img.layout.panels).toHaveLength(1);
    expect([img.layout.panels[0]!.height, img.layout.panels[0]!.width]).toEqual([8, 10]);
    const labels = await readVolume(fixture('check', 'dense2d_uint8.h5'), 'lab');
    const p = img.layout.panels[0]!;
    for (let r = 0; r < 8; r++) {
      for (let c = 0; c < 10; c++) {
        const l = labels.data[(r * 4 + 2) * 40 + (c * 4 + 2)]!;
        expect(px(img, p.x + c, p.y + r)).toEqual(blend(classColor(l), NO_RAW_GREY, OVERLAY_ALPHA));
      }
    }
  });

  it('shows a 2-D volume as one slice; n_lab comes from info; out-of-range values are magenta', async () => {
    const two = await renderPreview({ label: { file: fixture('check', 'dense2d_uint8.h5'), key: 'lab' }, slices: 5 });
    expect(two.meta.indices).toEqual([null]);
    expect(two.meta.nLabSource).toBe('info');
    expect(two.meta.nLab).toBe(3);
    const bad = await renderPreview({ label: { file: fixture('check', 'out_of_range.h5'), key: 'lab' }, nLab: 3, slices: 100 });
    expect(bad.counts!.outOfRange).toBeGreaterThan(0);
    expect(bad.meta.findings.map((f) => f.code)).toContain('preview-out-of-range');
    let magenta = 0;
    for (const p of bad.layout.panels) for (let y = 0; y < p.height; y++) for (let x = 0; x < p.width; x++) if (px(bad, p.x + x, p.y + y).join() === INVALID_COLOR.join()) magenta++;
    expect(magenta).toBeGreaterThan(0);
  });

  it('maps non-uint8 raw through a percentile window; channels-first raw shows channel 0', async () => {
    const ramp = await renderPreview({ raw: { file: fixture('preview', 'uint16_raw.h5'), key: 'raw' }, slices: 4 });
    expect(ramp.meta.label).toBeNull();
    expect(ramp.counts).toBeNull();
    expect(ramp.meta.rawWindow![0]).toBeGreaterThanOrEqual(1000);
    expect(ramp.meta.rawWindow![1]).toBeLessThanOrEqual(1590);
    // grey grows along z (columns) and along x (later slices)
    const p0 = ramp.layout.panels[0]!;
    const p3 = ramp.layout.panels[3]!;
    const g = (p: typeof p0, x: number): number => px(ramp, p.x + x, p.y + 1)[0]!;
    expect(g(p0, 0)).toBe(0);
    expect(g(p0, p0.width - 1)).toBeGreaterThan(g(p0, 0));
    expect(g(p3, p3.width - 1)).toBe(255);
    const ch = await renderPreview({ label: { file: fixture('check', 'pair_labels.h5'), key: 'lab' }, raw: { file: fixture('check', 'pair_raw_channels.h5'), key: 'raw' }, nLab: 3 });
    expect(ch.meta.raw!.channel).toBe(0);
    expect(ch.meta.findings.map((f) => f.code)).toContain('preview-raw-channel');
  });

  it('refuses raw that cannot hold the labels, and bad options', async () => {
    // raw smaller than the labels
    await expect(renderPreview({ label: { file: fixture('check', 'dense3d_int16_chunked.h5'), key: 'lab' }, raw: { file: fixture('preview', 'offset_raw.h5'), key: 'raw' } })).rejects.toMatchObject({ code: 'raw-shape-mismatch' });
    // labels pushed out of the raw by their offset
    await expect(renderPreview({ label: { file: fixture('preview', 'offset_labels.h5'), key: 'lab' }, raw: { file: fixture('preview', 'offset_raw.h5'), key: 'raw' }, offset: [5, 0, 0] })).rejects.toMatchObject({ code: 'raw-shape-mismatch' });
    // raw neither 3-D nor channels-first 3-D
    await expect(renderPreview({ label: { file: fixture('check', 'dense2d_uint8.h5'), key: 'lab' }, raw: { file: fixture('check', 'pair_raw_channels.h5'), key: 'raw' } })).rejects.toMatchObject({ code: 'raw-ndim' });
    await expect(renderPreview({ label: { file: fixture('check', 'pair_labels.h5'), key: 'lab' }, axis: 3 })).rejects.toMatchObject({ exitCode: 2 });
    await expect(renderPreview({})).rejects.toMatchObject({ exitCode: 2 });
  });

  it('composePreview is pure: same content, same pixels', () => {
    const content = {
      title: 't',
      shape: [2, 3],
      axis: 0,
      rows: 2,
      cols: 3,
      slices: [{ index: null, raw: Uint8Array.of(0, 50, 100, 150, 200, 250), labels: Int16Array.of(-1, 0, 1, 2, 7, -1) }],
      nLab: 3,
      classNames: ['a', 'b', 'c'],
      info: null,
      hasRaw: true,
      hasLabels: true,
    };
    const a = composePreview(content, { zoom: 4 });
    const b = composePreview(content, { zoom: 4 });
    expect(Buffer.from(a.rgb).equals(Buffer.from(b.rgb))).toBe(true);
    const p = a.layout.panels[0]!;
    expect(px(a, p.x + 4 * 1 + 1, p.y + 1)).toEqual(blend(classColor(0), 50, OVERLAY_ALPHA));
    expect(px(a, p.x + 4 * 1 + 1, p.y + 4 + 1)).toEqual([...INVALID_COLOR]);
  });
});

describe('lazylabel preview (CLI)', () => {
  it('writes a PNG for a manifest cube; --json follows the schema; refuses to overwrite without --force', () => {
    const dir = tmpDir();
    const out = path.join(dir, 'slices.png');
    const r = runCli(['preview', 'shifted', '--manifest', fixture('preview', 'manifest.json'), '-o', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(schemaErrors('preview-report', report)).toEqual([]);
    expect(report.cube).toBe('shifted');
    expect(report.raw.offset).toEqual([1, 3, 4]);
    expect(report.classNames).toEqual(['background', 'mito', 'vesicle_cloud']);
    expect(report.info).toEqual({ labeled: [1, 1, 0], notPresent: [0, 0, 1], source: 'file' });
    const png = PNG.sync.read(fs.readFileSync(out));
    expect([png.width, png.height]).toEqual([report.image.width, report.image.height]);
    expect(fs.readdirSync(dir)).toEqual(['slices.png']);

    const again = runCli(['preview', '--manifest', fixture('preview', 'manifest.json'), '--cube', 'shifted', '-o', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('--force');
    const forced = runCli(['preview', '--manifest', fixture('preview', 'manifest.json'), '--cube', 'shifted', '-o', out, '--force', '--slices', '2', '--axis', '2']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/wrote .*slices\.png: \d+x\d+ px, shifted \(6,10,12\), 2 slices \(axis 2 at 3, 9\)/);
  });

  it('previews label and raw files; 2-D labels alone', () => {
    const dir = tmpDir();
    const r = runCli(['preview', '--label', `${fixture('check', 'pair_labels.h5')}:lab`, '--raw', fixture('check', 'pair_raw_same.h5'), '--n-lab', '3', '-o', path.join(dir, 'a.png'), '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(schemaErrors('preview-report', JSON.parse(r.stdout))).toEqual([]);
    const two = runCli(['preview', fixture('check', 'dense2d_uint8.h5'), '-o', path.join(dir, 'b.png'), '--json']);
    expect(two.code, two.stderr).toBe(0);
    const rep = JSON.parse(two.stdout);
    expect(schemaErrors('preview-report', rep)).toEqual([]);
    expect(rep.slices).toEqual([null]);
    expect(rep.raw).toBeNull();
  });

  it('usage and data errors are one line with stable exit codes', () => {
    const dir = tmpDir();
    const unknown = runCli(['preview', 'nope', '--manifest', fixture('preview', 'manifest.json'), '-o', path.join(dir, 'x.png')]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('shifted, centred, ramp');
    const nothing = runCli(['preview', '-o', path.join(dir, 'x.png')]);
    expect(nothing.code).toBe(2);
    const missing = runCli(['preview', '--label', path.join(dir, 'missing.h5'), '-o', path.join(dir, 'x.png')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain('file not found');
    // the output may never be an input
    const self = runCli(['preview', '--label', fixture('check', 'pair_labels.h5'), '-o', fixture('check', 'pair_labels.h5'), '--force']);
    expect(self.code).toBe(2);
    expect(fs.existsSync(path.join(dir, 'x.png'))).toBe(false);
  });
});

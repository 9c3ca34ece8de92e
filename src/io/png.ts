/** PNG output for previews and the demo figure (pngjs), written atomically. */
import { createRequire } from 'node:module';
import type * as Pngjs from 'pngjs';
import { writeAtomically, type OutputGuard } from './atomic.js';
import fs from 'node:fs';

// pngjs (~15 ms) is required by the first encode, not on import: modules that only draw (report/preview.ts
// uses createImage) and runs that write no PNG (report --max-previews 0) never load it. require keeps encodePng sync.
const requireCjs = createRequire(import.meta.url);

/** An RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  rgb: Uint8Array;
}

export function createImage(width: number, height: number, fill: [number, number, number] = [255, 255, 255]): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb.set(fill, i * 3);
  return { width, height, rgb };
}

/** Copy `src` into `dst` with its top-left corner at (x, y). */
export function blit(dst: RgbImage, src: RgbImage, x: number, y: number): void {
  for (let r = 0; r < src.height; r++) {
    const yy = y + r;
    if (yy < 0 || yy >= dst.height) continue;
    for (let c = 0; c < src.width; c++) {
      const xx = x + c;
      if (xx < 0 || xx >= dst.width) continue;
      dst.rgb.set(src.rgb.subarray((r * src.width + c) * 3, (r * src.width + c) * 3 + 3), (yy * dst.width + xx) * 3);
    }
  }
}

export function encodePng(img: RgbImage): Buffer {
  const { PNG } = requireCjs('pngjs') as typeof Pngjs;
  const png = new PNG({ width: img.width, height: img.height, colorType: 2 });
  for (let i = 0; i < img.width * img.height; i++) {
    png.data[i * 4] = img.rgb[i * 3]!;
    png.data[i * 4 + 1] = img.rgb[i * 3 + 1]!;
    png.data[i * 4 + 2] = img.rgb[i * 3 + 2]!;
    png.data[i * 4 + 3] = 255;
  }
  return PNG.sync.write(png, { colorType: 2 });
}

export async function writePng(path: string, img: RgbImage, guard: OutputGuard = {}): Promise<void> {
  const buf = encodePng(img);
  await writeAtomically(path, guard, async (tmp) => fs.writeFileSync(tmp, buf, { flag: 'wx' }));
}

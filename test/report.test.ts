/** `report`: the HTML page (sections, inlined images, no external references), run reading, CLI + schema, and a headless Chromium render. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildReportData, readRun, report } from '../src/ops/report.js';
import { classBalance, movingAverage, renderReportHtml, SECTIONS } from '../src/report/html.js';
import { fixture, runCli, schemaErrors, tmpDir } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const hasChromium = fs.existsSync(CHROMIUM);

/** A run folder as train writes it: config.json and metrics.jsonl with train and valid rows (one damaged line). */
function fakeRun(dir: string, steps = 60): string {
  const run = path.join(dir, 'run');
  fs.mkdirSync(run);
  fs.writeFileSync(
    path.join(run, 'config.json'),
    JSON.stringify({ version: '0.1.0', manifest: 'dataset.json', nLab: 3, unet: { dims: 3, nLab: 3, inChannels: 1, depth: 2, baseFilters: 8, anisotropicLevels: 1, seed: 1 }, patch: [8, 48, 48], batch: 2, lr: 0.002, seed: 1, normalisation: 'voxels', lazyLabels: true, classWeights: null, rawDivisor: 255 }),
  );
  const lines: string[] = [];
  for (let step = 1; step <= steps; step++) {
    lines.push(JSON.stringify({ type: 'train', step, loss: 1.2 * Math.exp(-step / 20) + 0.05 * Math.sin(step), patchesPerSec: 6, redraws: 0, time: 1_700_000_000_000 + step }));
    if (step % 10 === 0) {
      const f = step / steps;
      lines.push(
        JSON.stringify({
          type: 'valid',
          step,
          perClass: [
            { precision: 0.9 + 0.05 * f, recall: 0.95, iou: 0.85 + 0.1 * f, support: 1000 },
            { precision: 0.3 + 0.5 * f, recall: 0.2 + 0.6 * f, iou: 0.1 + 0.6 * f, support: 120 },
            { precision: null, recall: 0, iou: 0, support: 40 },
          ],
          notPresentMeanProb: [null, null, 0.4 * (1 - f) + 0.02],
          batches: 4,
        }),
      );
    }
  }
  lines.splice(5, 0, '{"type":"train","step":'); // a line cut short by a crash
  fs.writeFileSync(path.join(run, 'metrics.jsonl'), lines.join('\n') + '\n');
  return run;
}

describe('report data and HTML', () => {
  it('reads a run folder, skipping damaged lines', () => {
    const run = readRun(fakeRun(tmpDir()));
    expect(run.train).toHaveLength(60);
    expect(run.valid.map((v) => v.step)).toEqual([10, 20, 30, 40, 50, 60]);
    expect(run.skippedLines).toBe(1);
    expect(run.config?.nLab).toBe(3);
    expect(run.notes).toEqual([]);
    const empty = path.join(tmpDir(), 'empty');
    fs.mkdirSync(empty);
    expect(readRun(empty).notes.join(' ')).toContain('no metrics.jsonl');
    expect(() => readRun(path.join(empty, 'nope'))).toThrow(/not found/);
  });

  it('builds one self-contained page with every section', async () => {
    const data = await buildReportData({ manifest: fixture('check', 'manifest_ok.json'), run: fakeRun(tmpDir()), now: new Date('2026-01-02T03:04:05Z') });
    const html = renderReportHtml(data);
    for (const id of SECTIONS) expect(html).toContain(`<section id="${id}">`);
    // previews are inlined PNGs, one per cube
    const images = [...html.matchAll(/<img [^>]*src="data:image\/png;base64,([A-Za-z0-9+/=]+)"/g)];
    expect(images).toHaveLength(3);
    for (const m of images) expect(Buffer.from(m[1]!, 'base64').subarray(1, 4).toString()).toBe('PNG');
    // nothing is fetched from anywhere: no scripts, no external URLs, a CSP that forbids them
    expect(html).not.toMatch(/<script|<link |<iframe|@import|url\(/i);
    expect(html).not.toMatch(/(src|href)="(?!data:|#)/);
    expect(html).toContain(`Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'"`);
    // charts: class balance, loss, IoU, not-present probability
    expect((html.match(/<svg /g) ?? []).length).toBe(4);
    expect(html).toContain('labelled voxels per class (all cubes)');
    expect(html).toContain('mean p(class) where flagged not present');
    expect(html).toContain('Last validation (step 60)');
    expect(html).toContain('vesicle_cloud');
    expect(html).toContain('generated 2026-01-02T03:04:05.000Z');
    // per-cube prios come from suggest-prios, and the manifest is left alone
    expect(data.prios?.written).toBe(false);
    expect(data.prios?.cubes.map((c) => c.name)).toEqual(['dense', 'dense_offset', 'nucleus']);
    // class balance: labelled voxels per class where flagged labelled, train vs valid
    const b = classBalance(data);
    const files = data.check.files;
    expect(b.train[0]).toBe(files[0]!.stats!.classCounts[0]! + files[2]!.stats!.classCounts[0]!);
    expect(b.valid[1]).toBe(files[1]!.stats!.classCounts[1]);
    expect(b.notPresentCubes).toEqual([0, 0, 1]);
    // text from the data is escaped
    const evil = renderReportHtml({ ...data, title: '<b>x</b> & "y"' });
    expect(evil).toContain('&lt;b&gt;x&lt;/b&gt; &amp; &quot;y&quot;');
  });

  it('moving average of the loss', () => {
    expect(movingAverage([1, 2, 3, 4].map((loss, i) => ({ step: i + 1, loss })), 2)).toEqual([
      [2, 1.5],
      [3, 2.5],
      [4, 3.5],
    ]);
  });

  it('shows data errors in the page and exits 1; a broken cube gets an error instead of a preview', async () => {
    const dir = tmpDir();
    const manifest = path.join(dir, 'dataset.json');
    const src = JSON.parse(fs.readFileSync(fixture('preview', 'manifest.json'), 'utf8'));
    src.cubes = src.cubes.map((c: { label: string; raw?: string }) => ({ ...c, label: fixture('preview', c.label), ...(c.raw ? { raw: fixture('preview', c.raw) } : {}) }));
    src.cubes.push({ name: 'gone', label: path.join(dir, 'missing.h5') });
    fs.writeFileSync(manifest, JSON.stringify(src));
    const out = path.join(dir, 'report.html');
    const r = runCli(['report', '--manifest', manifest, '-o', out, '--json']);
    expect(r.code, r.stderr).toBe(1);
    const summary = JSON.parse(r.stdout);
    expect(schemaErrors('report-report', summary)).toEqual([]);
    expect(summary.ok).toBe(false);
    expect(summary.check.error).toBe(2);
    expect(summary.previews).toEqual({ rendered: 3, failed: 1, skipped: 0 });
    expect(summary.training).toBeNull();
    const html = fs.readFileSync(out, 'utf8');
    expect(html).toContain('raw-shape-mismatch');
    expect(html).toContain('file-missing');
    expect(html).toMatch(/no preview: .*missing\.h5/);
  });

  it('CLI: --json follows the schema, refuses to overwrite without --force, never writes over an input', () => {
    const dir = tmpDir();
    const out = path.join(dir, 'report.html');
    const run = fakeRun(dir);
    const r = runCli(['report', '--manifest', fixture('check', 'manifest_ok.json'), '--run', run, '-o', out, '--json', '--max-previews', '2']);
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout);
    expect(schemaErrors('report-report', summary)).toEqual([]);
    expect(summary.sections).toEqual([...SECTIONS]);
    expect(summary.previews).toEqual({ rendered: 2, failed: 0, skipped: 1 });
    expect(summary.training).toMatchObject({ trainSteps: 60, lastStep: 60, validations: 6, lastValidationStep: 60, skippedLines: 1 });
    expect(summary.bytes).toBe(fs.statSync(out).size);
    const again = runCli(['report', '--manifest', fixture('check', 'manifest_ok.json'), '-o', out]);
    expect(again.code).toBe(2);
    expect(again.stderr).toContain('--force');
    const forced = runCli(['report', '--manifest', fixture('check', 'manifest_ok.json'), '-o', out, '--force']);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toContain('summary, check, cubes, balance, previews');
    const self = runCli(['report', '--manifest', fixture('check', 'manifest_ok.json'), '-o', fixture('check', 'manifest_ok.json'), '--force']);
    expect(self.code).toBe(2);
    const noRun = runCli(['report', '--manifest', fixture('check', 'manifest_ok.json'), '--run', path.join(dir, 'nope'), '-o', path.join(dir, 'r2.html')]);
    expect(noRun.code).toBe(2);
    expect(fs.existsSync(path.join(dir, 'r2.html'))).toBe(false);
  });
});

describe.skipIf(!hasChromium)('report in headless Chromium', () => {
  it('renders without console errors or requests, with every section, and screenshots', async () => {
    const { chromium } = await import('playwright-core');
    const dir = tmpDir('lazylabel-report-');
    const out = path.join(dir, 'report.html');
    await report({ manifest: fixture('check', 'manifest_ok.json'), run: fakeRun(dir), out });
    const profile = fs.mkdtempSync(path.join(dir, 'profile-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1280, height: 900 },
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      const requests: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
      page.on('request', (r) => requests.push(r.url()));
      const url = `file://${out}`;
      const response = await page.goto(url, { waitUntil: 'load' });
      expect(response?.ok()).toBe(true);
      expect(problems).toEqual([]);
      // the page itself is the only request: images are data: URIs, there are no scripts or styles to fetch
      expect(requests.filter((r) => !r.startsWith('data:'))).toEqual([url]);
      expect(await page.title()).toBe('lazylabel report: manifest_ok.json');
      for (const id of SECTIONS) {
        await expect(page.locator(`#${id}`).isVisible()).resolves.toBe(true);
        await expect(page.locator(`#${id} h2`).count()).resolves.toBe(1);
      }
      const headings = await page.locator('h2').allTextContents();
      expect(headings).toEqual(['Summary', 'Check findings', 'Cubes', 'Class balance', 'Slice previews', 'Training']);
      // every preview decoded to its pixel size; every chart drew
      const images = await page.locator('#previews img').evaluateAll((els) => els.map((e) => [(e as HTMLImageElement).complete, (e as HTMLImageElement).naturalWidth, (e as HTMLImageElement).naturalHeight]));
      expect(images).toHaveLength(3);
      for (const [complete, w, h] of images) {
        expect(complete).toBe(true);
        expect(w).toBeGreaterThan(100);
        expect(h).toBeGreaterThan(50);
      }
      const svgs = await page.locator('svg').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
      expect(svgs).toHaveLength(4);
      for (const w of svgs) expect(w).toBeGreaterThan(300);
      await expect(page.locator('#cubes table tr').count()).resolves.toBe(4);
      await expect(page.locator('#training table').last().textContent()).resolves.toContain('vesicle_cloud');
      const shot = path.join(dir, 'report.png');
      await page.screenshot({ path: shot, fullPage: true });
      expect(fs.statSync(shot).size).toBeGreaterThan(50_000);
      if (process.env.LAZYLABEL_KEEP_SCREENSHOT) fs.copyFileSync(shot, process.env.LAZYLABEL_KEEP_SCREENSHOT);
    } finally {
      await context.close();
    }
  });
});

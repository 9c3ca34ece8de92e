/** `lazylabel demo`: run the whole pipeline on synthetic EM data and print the evaluation table. */
import type { Argv } from 'yargs';
import type { DemoReport } from '../demo/demo.js';
import { ExitCode } from '../errors.js';
import { printJson, printLines, table, type GlobalFlags } from './output.js';
import { progressBar } from './progress.js';

interface DemoArgs extends GlobalFlags {
  out: string;
  steps: number;
  seed: number;
  backend: 'auto' | 'tensorflow' | 'wasm' | 'cpu';
  force: boolean;
}

export function builder(y: Argv): Argv<DemoArgs> {
  return y
    .option('out', { type: 'string', default: 'demo', describe: 'folder for the data, manifests, runs, predictions and demo.png' })
    .option('steps', { type: 'number', default: 400, describe: 'training steps per run (two runs: with and without lazy cubes)' })
    .option('seed', { type: 'number', default: 1 })
    .option('backend', { choices: ['auto', 'tensorflow', 'wasm', 'cpu'] as const, default: 'auto' as const })
    .option('force', { type: 'boolean', default: false, describe: 'replace a non-empty --out folder' })
    .example('$0 demo', 'about 1 minute on 2 CPU cores with the oneDNN convolutions, 2-5 without')
    .example('$0 demo --steps 50 --out /tmp/demo', 'a quick look') as unknown as Argv<DemoArgs>;
}

const pct = (v: number | null): string => (v === null ? '-' : `${(100 * v).toFixed(1)}%`);
const num = (v: number | null, d = 3): string => (v === null ? '-' : v.toFixed(d));

export function renderDemo(r: DemoReport): string[] {
  return [
    `data and runs in ${r.out} (backend ${r.backend}, ${r.steps} steps per run, ${r.seconds.toFixed(0)} s in all)`,
    `check: ${r.check.files} cubes, ${r.check.errors} errors, ${r.check.warnings} warnings`,
    ...r.convert.map((c) => `convert (${c.mode}): ${c.output}  labeled=${c.info.labeled.join('')} not_present=${c.info.notPresent.join('')}`),
    'suggest-prios (lazy share 0.25): ' + r.prios.filter((p) => p.prio !== null && p.share !== null).map((p) => `${p.name}=${(100 * p.share!).toFixed(1)}%`).join(', '),
    '',
    'evaluation on the test cube (vesicle clouds = class 2; nuclei look like vesicle clouds):',
    table(
      ['training set', 'class-2 FP rate in nuclei', 'class-2 F1 outside nuclei', 'class-1 F1 outside nuclei', 'final loss', 'train s'],
      r.evaluation.map((e) => [e.run, pct(e.class2FalsePositiveRateInNuclei), num(e.class2F1OutsideNuclei), num(e.class1F1OutsideNuclei), num(e.finalLoss, 4), e.seconds.toFixed(0)]),
    ),
    `figure: ${r.figure} (raw | ground truth | dense only | dense + lazy; red mitochondria, green vesicle clouds, blue nucleus outline)`,
  ];
}

export async function handler(args: DemoArgs): Promise<number> {
  const bar = progressBar({ quiet: args.quiet || args.json, unit: 'steps' });
  const { runDemo } = await import('../demo/demo.js');
  let report: DemoReport;
  try {
    report = await runDemo({
      out: args.out,
      steps: args.steps,
      seed: args.seed,
      backend: args.backend,
      force: args.force,
      log: (line) => {
        if (!args.quiet && !args.json) {
          bar.stop();
          process.stderr.write(`lazylabel demo: ${line}\n`);
        }
      },
      onStep: (run, step, total, loss) => bar.update({ label: run, done: step, total, detail: `loss ${loss.toFixed(4)}` }),
    });
  } finally {
    bar.stop();
  }
  if (args.json) printJson(report);
  else printLines(renderDemo(report));
  return report.ok ? ExitCode.ok : ExitCode.dataError;
}

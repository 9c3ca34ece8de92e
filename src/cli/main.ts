/** The `lazylabel` command line: global flags, one subcommand per module, stable exit codes, no stack traces for user errors. */
import yargs, { type Argv } from 'yargs';
import { ExitCode, isLazyLabelError, usageError } from '../errors.js';
import { DEFAULT_SLAB_MB } from '../core/slabs.js';
// command modules hold flags and rendering only (cheap); each handler imports its ops/ module (h5wasm, ajv, ...) when it runs
import * as check from './check.js';
import * as convert from './convert.js';
import * as suggestPrios from './suggestPrios.js';
import * as train from './train.js';
import * as predict from './predict.js';
import * as demo from './demo.js';
import * as importConfig from './importConfig.js';
import * as merge from './merge.js';
import * as preview from './preview.js';
import * as report from './report.js';
import { VERSION } from '../version.js';

interface CommandSpec {
  command: string;
  describe: string;
  builder: (y: Argv) => Argv<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  handler: (args: any) => Promise<number>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export const commands: CommandSpec[] = [
  { command: 'check [files..]', describe: 'validate lazy-label HDF5 files (labels, info, raw pairing) or a whole manifest', ...check },
  { command: 'convert', describe: 'turn coarse masks or dense class volumes into -1-ignored label volumes with info', ...convert },
  { command: 'suggest-prios [files..]', describe: 'suggest ELEKTRONN cube_prios from label density (lazy cubes drawn less often)', ...suggestPrios },
  { command: 'train', describe: 'train a 2D/3D U-Net with the masked lazy-label loss (GPU, CPU or wasm backend)', ...train },
  { command: 'predict', describe: 'tiled inference with a trained model: per-class probabilities and argmax labels', ...predict },
  { command: 'merge [inputs..]', describe: 'join the shards of a --shard i/n run: check/suggest-prios reports, convert/predict part files', ...merge },
  { command: 'preview [target]', describe: 'PNG grid of slices: raw grey, class overlay, ignored voxels hatched, legend with info flags', ...preview },
  { command: 'report', describe: 'one self-contained HTML page: check findings, cube stats and prios, class balance, previews, training curves', ...report },
  { command: 'demo', describe: 'the whole pipeline on synthetic EM data: lazy labels vs dense only, evaluated', ...demo },
  { command: 'import-config <config>', describe: 'read an ELEKTRONN config (parsed, never run) into a dataset manifest', ...importConfig },
];

/** Largest class count, as in schemas/manifest.schema.json (labels are int16 on output). */
const MAX_N_LAB = 65535;

/** Exit code for bugs (not the user's fault): kept apart from the documented 0/1/2. */
const INTERNAL_ERROR = 3;

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = ExitCode.ok;
  const verbose = argv.includes('--verbose');
  let parser = yargs(argv)
    .scriptName('lazylabel')
    .version(VERSION)
    .strict()
    .demandCommand(1, 'name a command, e.g. lazylabel check --help')
    .option('json', { type: 'boolean', default: false, global: true, describe: 'machine-readable JSON report on stdout (schemas/ has its JSON Schema)' })
    .option('quiet', { type: 'boolean', default: false, global: true, describe: 'no progress bar' })
    .option('verbose', { type: 'boolean', default: false, global: true, describe: 'show informational findings and internal details' })
    .option('slab-mb', { type: 'number', default: DEFAULT_SLAB_MB, global: true, describe: 'memory budget per slab in MiB (volumes are streamed in slabs of this size)' })
    .option('allow-external', { type: 'boolean', default: false, global: true, describe: 'follow HDF5 external links, virtual datasets and external storage outside the file\'s folder (refused by default)', coerce: (v: boolean) => ((process.env.LAZYLABEL_ALLOW_EXTERNAL = v ? '1' : '0'), v) })
    .completion('completion', 'print a bash/zsh completion script (lazylabel completion >> ~/.bashrc)')
    .epilog('Exit codes: 0 ok, 1 errors found in the data, 2 usage error, 3 internal error (please report).')
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      if (err) throw err;
      throw usageError(msg, 'see --help');
    });
  for (const spec of commands) {
    parser = parser.command(spec.command, spec.describe, spec.builder, async (args) => {
      if (typeof args.slabMb !== 'number' || !(args.slabMb > 0)) throw usageError('--slab-mb must be a positive number');
      // one check for every command that takes --n-lab, with the manifest schema's bound
      if (args.nLab !== undefined && (typeof args.nLab !== 'number' || !Number.isInteger(args.nLab) || args.nLab < 1 || args.nLab > MAX_N_LAB)) {
        throw usageError(`--n-lab must be an integer from 1 to ${MAX_N_LAB}, got ${String(args.nLab)}`, 'e.g. --n-lab 3 for classes 0, 1, 2');
      }
      // yargs lays out (and caches) the command's whole --help text right after calling this handler, for a
      // showHelp() inside it, which no handler here makes; unwrapped, that unseen text costs ~10 ms less
      parser.wrap(null);
      exitCode = await spec.handler(args);
    });
  }
  try {
    await parser.parseAsync();
    return exitCode;
  } catch (e) {
    if (isLazyLabelError(e)) {
      process.stderr.write(`lazylabel: ${e.describe()}\n`);
      return e.exitCode;
    }
    const err = e as Error;
    process.stderr.write(`lazylabel: internal error: ${err?.message ?? String(e)}\n`);
    if (verbose && err?.stack) process.stderr.write(err.stack + '\n');
    else process.stderr.write('(run with --verbose for details, and please report it)\n');
    return INTERNAL_ERROR;
  }
}

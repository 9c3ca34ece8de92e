/** Picks the fastest usable tfjs backend (tfjs-node-gpu with a GPU > tfjs-node > wasm > cpu) and returns the tf namespace it is active on. */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import * as tfjs from '@tensorflow/tfjs';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { ExitCode, LazyLabelError } from '../errors.js';
import { registerDnnlKernels } from './dnnlKernels.js';
import { registerWasmTrainingKernels } from './wasmKernels.js';

export type BackendPreference = 'auto' | 'tensorflow' | 'wasm' | 'cpu';
/**
 * The tfjs namespace type. (Spelled `typeof tfjs`, not `typeof import('@tensorflow/tfjs')`: under
 * NodeNext the latter includes a synthetic `default` export of the CommonJS package, which makes it
 * unassignable from `import * as tf` namespaces.)
 */
export type Tf = typeof tfjs;

export interface SelectedBackend {
  /** Name of the backend that is now active: 'tensorflow', 'wasm' or 'cpu'. */
  name: string;
  /** One line for humans: which package, GPU or not, SIMD/threads, and why faster options were skipped. */
  detail: string;
  /** Use this namespace for everything afterwards (see selectBackend). */
  tf: Tf;
  /** The native kernels in use on the wasm backend (the oneDNN addon), or null: none built, turned off, or another backend. */
  nativeKernels: NativeKernels | null;
}

/** What the native addon runs (src/train/dnnlKernels.ts). */
export interface NativeKernels {
  library: 'oneDNN';
  version: string;
  kernels: string[];
}

const requireCjs = createRequire(import.meta.url);

const INSTALL_HOWTO =
  'To use it, run `npm install @tensorflow/tfjs-node-gpu` (Linux x64 with an NVIDIA GPU, CUDA and cuDNN) ' +
  'or `npm install @tensorflow/tfjs-node` (CPU only). Both download libtensorflow in their install step, so they need ' +
  'internet access, and their version must match @tensorflow/tfjs.';

interface TfNodeResult {
  tf?: Tf;
  gpu?: boolean;
  /** Why the package could not be used. */
  problem?: string;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message.split('\n')[0] : String(e);
}

/**
 * Loads a tfjs-node flavour and activates its 'tensorflow' backend. It is CommonJS and re-exports all of
 * @tensorflow/tfjs; require() returns that namespace, which is what we hand back, so callers use the
 * same tfjs copy the native backend registered itself with even if npm installed a nested one for it.
 * (tfjs keeps its engine and kernel registry on globalThis, so a second copy shares them anyway; we
 * still check the backend is active on the namespace we return.)
 */
async function loadTfNode(pkg: '@tensorflow/tfjs-node-gpu' | '@tensorflow/tfjs-node'): Promise<TfNodeResult> {
  let mod: unknown;
  try {
    requireCjs.resolve(pkg);
  } catch {
    return { problem: `${pkg} is not installed` };
  }
  try {
    mod = requireCjs(pkg);
  } catch (e) {
    // Typically the native addon is missing because its install script could not download libtensorflow.
    return { problem: `${pkg} is installed but failed to load (${errorText(e)})` };
  }
  const ntf = mod as Tf;
  try {
    if (!(await ntf.setBackend('tensorflow'))) return { problem: `${pkg} loaded but its 'tensorflow' backend failed to initialise` };
    await ntf.ready();
  } catch (e) {
    return { problem: `${pkg} loaded but its 'tensorflow' backend failed to initialise (${errorText(e)})` };
  }
  if (ntf.getBackend() !== 'tensorflow') return { problem: `${pkg} loaded but the active backend is '${ntf.getBackend()}'` };
  // The native backend object reports whether libtensorflow found a CUDA device.
  const be = ntf.backend() as unknown as { isUsingGpuDevice?: boolean };
  return { tf: ntf, gpu: be.isUsingGpuDevice === true };
}

/** 'tensorflow' via tfjs-node-gpu or tfjs-node; null (with reasons) when neither loads. */
async function tryTensorflow(reasons: string[]): Promise<SelectedBackend | null> {
  const gpu = await loadTfNode('@tensorflow/tfjs-node-gpu');
  if (gpu.tf && gpu.gpu) {
    return { name: 'tensorflow', detail: 'tensorflow (@tensorflow/tfjs-node-gpu on a CUDA GPU)', tf: gpu.tf, nativeKernels: null };
  }
  if (gpu.tf) {
    // The GPU package fell back to CPU libtensorflow. It has registered the 'tensorflow' backend, so
    // tfjs-node cannot register a second one; it would be the same CPU libtensorflow anyway.
    reasons.push('@tensorflow/tfjs-node-gpu found no usable CUDA GPU');
    return { name: 'tensorflow', detail: `tensorflow (libtensorflow on the CPU via @tensorflow/tfjs-node-gpu; ${reasons.join('; ')})`, tf: gpu.tf, nativeKernels: null };
  }
  if (gpu.problem) reasons.push(gpu.problem);
  const cpu = await loadTfNode('@tensorflow/tfjs-node');
  if (cpu.tf) {
    return { name: 'tensorflow', detail: `tensorflow (@tensorflow/tfjs-node, libtensorflow on the CPU${reasons.length ? `; ${reasons.join('; ')}` : ''})`, tf: cpu.tf, nativeKernels: null };
  }
  if (cpu.problem) reasons.push(cpu.problem);
  return null;
}

/** Directory holding the tfjs-backend-wasm .wasm binaries (next to its Node entry point), if found. */
function wasmBinaryDir(): string | null {
  try {
    const dir = path.dirname(requireCjs.resolve('@tensorflow/tfjs-backend-wasm'));
    return existsSync(path.join(dir, 'tfjs-backend-wasm.wasm')) ? dir : null;
  } catch {
    return null;
  }
}

async function tryWasm(reasons: string[]): Promise<SelectedBackend | null> {
  try {
    // In Node the backend reads its binaries with fs; point it at node_modules explicitly so a bundled
    // or relocated entry point does not look next to itself. Only possible before initialisation.
    const dir = wasmBinaryDir();
    if (dir && !tfjs.findBackend('wasm')) setWasmPaths(dir + path.sep);
    const kernels = registerWasmTrainingKernels();
    // The native addon's kernels on top (oneDNN convolutions and pooling, row copies, bias sums), where it was
    // built; the wasm ones become their fallbacks.
    const dnnl = registerDnnlKernels();
    if (!(await tfjs.setBackend('wasm'))) {
      reasons.push('the wasm backend failed to initialise (are the tfjs-backend-wasm .wasm files present?)');
      return null;
    }
    await tfjs.ready();
    const simd = await tfjs.env().getAsync('WASM_HAS_SIMD_SUPPORT');
    // tfjs-backend-wasm disables its multithreaded build in Node (tensorflow/tfjs#3830); forcing it
    // on fails to start workers from blob: URLs, so wasm runs on one thread here.
    const parts = [
      `SIMD ${simd ? 'on' : 'off'}`,
      'threads off (unsupported in Node)',
      `${kernels.length} training kernels added`,
      dnnl.version ? `convolutions by oneDNN ${dnnl.version} (native)` : `convolutions by XNNPACK in wasm: ${dnnl.problem}`,
    ];
    const nativeKernels: NativeKernels | null = dnnl.version ? { library: 'oneDNN', version: dnnl.version, kernels: dnnl.kernels } : null;
    return { name: 'wasm', detail: `wasm (${parts.join(', ')}${reasons.length ? `; ${reasons.join('; ')}` : ''})`, tf: tfjs, nativeKernels };
  } catch (e) {
    reasons.push(`the wasm backend failed to start (${errorText(e)})`);
    return null;
  }
}

/**
 * Activates a backend and returns it. 'auto' tries tfjs-node-gpu (only if it finds a GPU; without one
 * its CPU libtensorflow is used, which is what tfjs-node would give), tfjs-node, wasm, then cpu.
 * Explicit choices fail with an install hint instead of falling back.
 *
 * Always use the returned `tf` afterwards: for the tensorflow backend it is the namespace exported by
 * tfjs-node itself, i.e. the tfjs copy whose engine got the native backend.
 */
export async function selectBackend(pref: BackendPreference = 'auto'): Promise<SelectedBackend> {
  const reasons: string[] = [];
  switch (pref) {
    case 'tensorflow': {
      const sel = await tryTensorflow(reasons);
      if (sel) return sel;
      throw new LazyLabelError(`the 'tensorflow' backend is not available (${reasons.join('; ')}). ${INSTALL_HOWTO}`, {
        code: 'backend-unavailable',
        hint: 'or use --backend wasm, which needs nothing extra',
        exitCode: ExitCode.usage,
      });
    }
    case 'wasm': {
      const sel = await tryWasm(reasons);
      if (sel) return sel;
      throw new LazyLabelError(`the 'wasm' backend is not available: ${reasons.join('; ')}`, {
        code: 'backend-unavailable',
        hint: 'reinstall @tensorflow/tfjs-backend-wasm, or use --backend cpu',
        exitCode: ExitCode.usage,
      });
    }
    case 'cpu':
      return activateCpu(reasons);
    case 'auto': {
      const sel = (await tryTensorflow(reasons)) ?? (await tryWasm(reasons));
      return sel ?? activateCpu(reasons);
    }
    default:
      throw new LazyLabelError(`unknown backend '${String(pref)}'`, {
        code: 'usage',
        hint: "use one of 'auto', 'tensorflow', 'wasm', 'cpu'",
        exitCode: ExitCode.usage,
      });
  }
}

async function activateCpu(reasons: string[]): Promise<SelectedBackend> {
  if (!(await tfjs.setBackend('cpu'))) throw new Error("tfjs 'cpu' backend failed to initialise");
  await tfjs.ready();
  const note = 'pure JavaScript, slowest: its conv filter gradients are ~100x slower than wasm';
  return { name: 'cpu', detail: `cpu (${note}${reasons.length ? `; ${reasons.join('; ')}` : ''})`, tf: tfjs, nativeKernels: null };
}

/** Checkpoints and saved models in the tfjs layers format, written atomically with checksums so a killed run never leaves a half-written one. */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type * as tfType from '@tensorflow/tfjs';
import { LazyLabelError } from '../errors.js';

type TF = typeof tfType;

export interface CheckpointState {
  step: number;
  /** Anything the trainer needs to continue (config, sampler seed, best metrics). */
  [key: string]: unknown;
}

interface SavedFiles {
  /** sha256 of each file in the folder, checked on load. */
  checksums: Record<string, string>;
}

const sha256 = (buf: Buffer | Uint8Array): string => crypto.createHash('sha256').update(buf).digest('hex');

function toBuffer(data: ArrayBuffer | ArrayBuffer[]): Buffer {
  if (Array.isArray(data)) return Buffer.concat(data.map((d) => Buffer.from(d)));
  return Buffer.from(data);
}

/** Serialise a layers model to tfjs's model.json + weights.bin pair (what `tf.loadLayersModel` reads). */
export async function modelArtifacts(tf: TF, model: tfType.LayersModel): Promise<Record<string, Buffer>> {
  let files: Record<string, Buffer> = {};
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weights = toBuffer(artifacts.weightData ?? new ArrayBuffer(0));
      const modelJson = {
        format: 'layers-model',
        generatedBy: `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: 'lazylabel',
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs ?? [] }],
      };
      files = { 'model.json': Buffer.from(JSON.stringify(modelJson)), 'weights.bin': weights };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return files;
}

/** Optimizer slots (Adam moments, iteration count) as one binary plus a spec. */
async function optimizerArtifacts(optimizer: tfType.Optimizer): Promise<Record<string, Buffer>> {
  const named = await optimizer.getWeights();
  const specs = named.map((w) => ({ name: w.name, shape: w.tensor.shape, dtype: w.tensor.dtype }));
  const chunks = await Promise.all(named.map(async (w) => Buffer.from((await w.tensor.data() as Float32Array).buffer.slice(0))));
  return { 'optimizer.json': Buffer.from(JSON.stringify(specs)), 'optimizer.bin': Buffer.concat(chunks) };
}

/** Write a folder of files atomically: temp folder, fsync, rename; the checksums go in state.json last. */
/** Remove `*.tmp-PID` folders left by killed saves (their process is gone); never touches a live writer's. */
function removeStaleTempFolders(parent: string): void {
  if (!fs.existsSync(parent)) return;
  for (const name of fs.readdirSync(parent)) {
    const m = /\.tmp-(\d+)$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') fs.rmSync(path.join(parent, name), { recursive: true, force: true });
    }
  }
}

function writeFolderAtomically(dir: string, files: Record<string, Buffer>, state: CheckpointState): void {
  removeStaleTempFolders(path.dirname(dir));
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  const checksums: Record<string, string> = {};
  for (const [name, buf] of Object.entries(files)) {
    fs.writeFileSync(path.join(tmp, name), buf);
    checksums[name] = sha256(buf);
  }
  const stateBuf = Buffer.from(JSON.stringify({ ...state, checksums } satisfies CheckpointState & SavedFiles, null, 2));
  const fd = fs.openSync(path.join(tmp, 'state.json'), 'w');
  fs.writeSync(fd, stateBuf);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
}

/** Save the model alone (what `predict --model` reads). */
export async function saveModel(tf: TF, model: tfType.LayersModel, dir: string, state: CheckpointState): Promise<void> {
  writeFolderAtomically(dir, await modelArtifacts(tf, model), state);
}

/** Save model, optimizer and trainer state as `checkpoints/step-NNNNNNN`, keeping the newest `keep`. */
export async function saveCheckpoint(tf: TF, model: tfType.LayersModel, optimizer: tfType.Optimizer, runDir: string, state: CheckpointState, keep = 3): Promise<string> {
  const root = path.join(runDir, 'checkpoints');
  fs.mkdirSync(root, { recursive: true });
  const dir = path.join(root, `step-${String(state.step).padStart(7, '0')}`);
  writeFolderAtomically(dir, { ...(await modelArtifacts(tf, model)), ...(await optimizerArtifacts(optimizer)) }, state);
  const all = listCheckpoints(runDir);
  for (const old of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(old, { recursive: true, force: true });
  return dir;
}

/** Checkpoint folders, oldest first (temp folders of killed runs are ignored). */
export function listCheckpoints(runDir: string): string[] {
  const root = path.join(runDir, 'checkpoints');
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .filter((n) => /^step-\d+$/.test(n))
    .sort()
    .map((n) => path.join(root, n));
}

/** Read and verify a saved folder; throws when a file is missing or its checksum differs. */
function readVerified(dir: string): { state: CheckpointState & SavedFiles; files: Record<string, Buffer> } {
  const statePath = path.join(dir, 'state.json');
  if (!fs.existsSync(statePath)) throw new LazyLabelError('state.json missing', { code: 'checkpoint-corrupt', file: dir });
  const state = JSON.parse(fs.readFileSync(statePath, 'utf8')) as CheckpointState & SavedFiles;
  const files: Record<string, Buffer> = {};
  for (const [name, sum] of Object.entries(state.checksums ?? {})) {
    const p = path.join(dir, name);
    const buf = fs.existsSync(p) ? fs.readFileSync(p) : null;
    if (!buf || sha256(buf) !== sum) {
      throw new LazyLabelError(`${name} is ${buf ? 'damaged (checksum mismatch)' : 'missing'}`, { code: 'checkpoint-corrupt', file: dir });
    }
    files[name] = buf;
  }
  return { state, files };
}

async function modelFromFiles(tf: TF, files: Record<string, Buffer>): Promise<tfType.LayersModel> {
  const json = JSON.parse(files['model.json']!.toString('utf8')) as { modelTopology: object; weightsManifest: { weights: tfType.io.WeightsManifestEntry[] }[] };
  const weights = files['weights.bin']!;
  const data = weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength) as ArrayBuffer;
  return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0]!.weights, weightData: data }));
}

/** Load a saved model folder (run/model or a checkpoint). */
export async function loadModel(tf: TF, dir: string): Promise<{ model: tfType.LayersModel; state: CheckpointState }> {
  if (!fs.existsSync(path.join(dir, 'model.json'))) {
    const model = path.join(dir, 'model');
    if (fs.existsSync(path.join(model, 'model.json'))) return loadModel(tf, model);
    throw new LazyLabelError('no model.json here', { code: 'model-missing', file: dir, hint: 'pass the run folder written by lazylabel train, or its model/ folder' });
  }
  const { state, files } = readVerified(dir);
  return { model: await modelFromFiles(tf, files), state };
}

export interface ResumePoint {
  dir: string;
  model: tfType.LayersModel;
  state: CheckpointState;
  optimizerWeights: { name: string; tensor: tfType.Tensor }[];
}

/** The newest checkpoint that verifies; damaged ones are skipped (and reported), never trusted. */
export async function loadLatestCheckpoint(tf: TF, runDir: string): Promise<{ point: ResumePoint | null; skipped: string[] }> {
  const skipped: string[] = [];
  for (const dir of listCheckpoints(runDir).reverse()) {
    try {
      const { state, files } = readVerified(dir);
      const model = await modelFromFiles(tf, files);
      const specs = JSON.parse(files['optimizer.json']!.toString('utf8')) as { name: string; shape: number[]; dtype: 'float32' | 'int32' }[];
      const bin = files['optimizer.bin']!;
      let offset = 0;
      const optimizerWeights = specs.map((s) => {
        const size = s.shape.reduce((a, b) => a * b, 1);
        const arr = new Float32Array(bin.buffer.slice(bin.byteOffset + offset, bin.byteOffset + offset + size * 4));
        offset += size * 4;
        return { name: s.name, tensor: tf.tensor(arr, s.shape, 'float32') };
      });
      return { point: { dir, model, state, optimizerWeights }, skipped };
    } catch (e) {
      skipped.push(`${path.basename(dir)}: ${(e as Error).message}`);
    }
  }
  return { point: null, skipped };
}

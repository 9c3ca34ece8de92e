// Scratch prototype: tfjs-backend-wasm's multi-threaded build (XNNPACK on a pthreadpool) in Node.
//
// tfjs-backend-wasm 4.22 reports WASM_HAS_MULTITHREAD_SUPPORT = false in Node (tensorflow/tfjs#3830).
// Forcing it on fails: the backend hands Emscripten its pthread worker script and its own main script
// as blob: URLs, and Node's worker_threads.Worker only takes file paths
// (ERR_WORKER_PATH ... Received "blob:nodedata:..."). The Emscripten output itself supports Node
// (its worker script uses worker_threads when ENVIRONMENT_IS_NODE). So: while the backend
// initialises, record the text of every Blob created and let URL.createObjectURL write it to a
// temporary .cjs file and return that path; the main-script Blob sent to each pthread worker is
// replaced by such a path too, and the pool-size cap (logical cores / 2) is lifted. Call enableWasmThreads(n) BEFORE selectBackend('wasm').
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { setThreadsCount } from '@tensorflow/tfjs-backend-wasm';

export function enableWasmThreads(threads = os.cpus().length) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfjs-wasm-threads-'));
  const NativeBlob = globalThis.Blob;
  const texts = new WeakMap();
  class RecordingBlob extends NativeBlob {
    constructor(parts = [], opts) {
      super(parts, opts);
      if (parts.every((p) => typeof p === 'string')) texts.set(this, parts.join(''));
    }
  }
  globalThis.Blob = RecordingBlob;
  const nativeCreate = URL.createObjectURL;
  let n = 0;
  URL.createObjectURL = (blob) => {
    const text = texts.get(blob);
    if (text === undefined) return nativeCreate(blob);
    const file = path.join(dir, `blob-${n++}.cjs`);
    // The main-script blob is the factory's source text from tfjs-backend-wasm's Node bundle, which
    // refers to the bundle's module-level aliases of require('fs'|'path'|'perf_hooks'|'os').
    const prelude = "var commonjsGlobal = globalThis, require$$0 = require('fs'), require$$1 = require('path'), require$$3 = require('perf_hooks'), require$$4 = require('os');\n";
    fs.writeFileSync(file, (text.startsWith('var WasmBackendModule') ? prelude : '') + text);
    return file;
  };
  // Emscripten's main thread sends each pthread worker {cmd: 'load', urlOrBlob: <the main script Blob>};
  // the worker would turn it into a blob: URL of its own. Send the file path instead.
  const nativePost = Worker.prototype.postMessage;
  Worker.prototype.postMessage = function (msg, ...rest) {
    if (msg && msg.cmd === 'load' && msg.urlOrBlob instanceof NativeBlob) msg = { ...msg, urlOrBlob: URL.createObjectURL(msg.urlOrBlob) };
    return nativePost.call(this, msg, ...rest);
  };
  process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
  // The C++ side caps the pool at emscripten_num_logical_cores() / 2 ("x86 has 2 hyperthreads per
  // core"), which in Node is os.cpus().length / 2 = 1 on this 2-core VM. It reads that once, while the
  // module instantiates: report 2x the CPUs until then (call restoreCpus() after selectBackend).
  const nativeCpus = os.cpus;
  os.cpus = () => {
    const c = nativeCpus();
    return [...c, ...c];
  };
  restore = () => {
    os.cpus = nativeCpus;
  };
  tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
  setThreadsCount(threads);
  return { dir, threads };
}

let restore = () => {};
export function restoreCpus() {
  restore();
}

/** tfjs_bench.js --kernels hook: this module can also be loaded there, but threads must be enabled before the backend starts; use LAZYLABEL_WASM_THREADS=n with tfjs_bench.js instead. */
export function register() {
  return ['(threads: see LAZYLABEL_WASM_THREADS)'];
}

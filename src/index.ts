/** lazylabel's library API: the same operations the CLI runs, without the terminal. */
export { checkCube, checkCubes, checkManifest, type CheckOptions, type CheckReport, type FileReport } from './ops/check.js';
export { evaluateCube, rawSpatialShape, type CubeFacts, type CubeStats } from './core/checkRules.js';
export { parseInfoMask, defaultInfoMask, isLazy, infoMaskToArray, type InfoMask } from './core/infoMask.js';
export { LabelTally, type LabelTallyResult } from './core/labelTally.js';
export { parseManifest, classIdOf, type Manifest, type ManifestCube } from './core/manifest.js';
export { loadManifest, requireManifest } from './ops/manifestFile.js';
export { slabs, rowsPerSlab, DEFAULT_SLAB_MB, type Slab } from './core/slabs.js';
export { Codes, statusOf, type Finding, type Severity, type Status } from './core/findings.js';
export { H5Source, H5Sink, SlabWriter, withH5, type DatasetInfo } from './io/hdf5.js';
export { writeAtomically, writeTextAtomically } from './io/atomic.js';
export { parseVolumeRef, type VolumeRef } from './io/volumeRef.js';
export { LazyLabelError, ExitCode } from './errors.js';
export { lazyNll, type LazyNllOptions } from './train/loss.js';
export type { ProgressEvent, ProgressFn } from './ops/progress.js';
export { VERSION } from './version.js';
export { convert, type ConvertOptions, type ConvertReport } from './ops/convert.js';
export { suggestPrios, type SuggestPriosOptions, type PriosReport } from './ops/suggestPrios.js';
export { cubeInformation, sharesFromPrios, applyLazyShare, elektronnCubePrios } from './core/prios.js';
export { train, validate, type TrainOptions, type TrainReport } from './train/loop.js';
export { predict, type PredictOptions, type PredictReport } from './ops/predict.js';
export { selectBackend, type BackendPreference } from './train/backend.js';
export { buildUNet, checkPatchShape, type UNetConfig } from './train/models.js';
export { CubeStore } from './train/cubes.js';
export { PatchSampler } from './train/sampler.js';
export { MaskedConfusion, falsePositiveRate, f1InRegion } from './core/metrics.js';
export { runDemo, generateDemoData, type DemoReport } from './demo/demo.js';
/** `check` under its command name, for `import { check } from 'lazylabel'`. */
export { checkCubes as check } from './ops/check.js';

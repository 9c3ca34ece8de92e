/** Findings: what a rule says about a file, with a stable code, a severity and a message that says what to do. */

export type Severity = 'error' | 'warning' | 'info';

export interface Finding {
  severity: Severity;
  code: string;
  message: string;
}

export type Status = 'ok' | 'warn' | 'error';

export const error = (code: string, message: string): Finding => ({ severity: 'error', code, message });
export const warning = (code: string, message: string): Finding => ({ severity: 'warning', code, message });
export const info = (code: string, message: string): Finding => ({ severity: 'info', code, message });

/** The worst severity decides: any error → error, any warning → warn, else ok. */
export function statusOf(findings: readonly Finding[]): Status {
  if (findings.some((f) => f.severity === 'error')) return 'error';
  if (findings.some((f) => f.severity === 'warning')) return 'warn';
  return 'ok';
}

/** Stable codes, in one place so docs, tests and schema agree. */
export const Codes = {
  fileMissing: 'file-missing',
  notHdf5: 'not-hdf5',
  corrupt: 'corrupt',
  datasetMissing: 'dataset-missing',
  labelNdim: 'label-ndim',
  labelDtypeUnsupported: 'label-dtype-unsupported',
  labelFloatIntegral: 'label-float-integral',
  labelNonIntegral: 'label-non-integral',
  labelOutOfRange: 'label-out-of-range',
  infoMissing: 'info-missing',
  infoShape: 'info-shape',
  infoValues: 'info-values',
  infoFloat: 'info-float',
  notPresentHasVoxels: 'not-present-has-voxels',
  unlabeledClassHasVoxels: 'unlabeled-class-has-voxels',
  noTrainingSignal: 'no-training-signal',
  rawShapeMismatch: 'raw-shape-mismatch',
  rawNdim: 'raw-ndim',
  manifestSchema: 'manifest-schema',
  manifestDuplicateCube: 'manifest-duplicate-cube',
  manifestLazyDisabled: 'manifest-lazy-disabled',
  manifestClassWeights: 'manifest-class-weights',
} as const;

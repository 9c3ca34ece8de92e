/** Progress events that long operations emit; the CLI turns them into a bar, the library ignores them by default. */

export interface ProgressEvent {
  /** What is being worked on, e.g. a file name. */
  label: string;
  /** Units done and total (voxels, steps, tiles: the operation decides). */
  done: number;
  total: number;
  /** Short status to show beside the bar (e.g. the current loss). */
  detail?: string;
}

export type ProgressFn = (event: ProgressEvent) => void;

export const noProgress: ProgressFn = () => {};

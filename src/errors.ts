/** The one error type for problems a user can fix: it carries an exit code and a hint, never a stack trace. */

/** Exit codes are part of the public contract: 0 ok, 1 findings/errors in data, 2 usage. */
export const ExitCode = {
  ok: 0,
  dataError: 1,
  usage: 2,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export interface LazyLabelErrorInit {
  /** Stable machine-readable code, e.g. `file-missing`, `dataset-missing`. */
  code: string;
  /** Which file the problem is in, when there is one. */
  file?: string;
  /** Which dataset inside the file, when there is one. */
  dataset?: string;
  /** What the user should do about it. */
  hint?: string;
  exitCode?: ExitCode;
}

export class LazyLabelError extends Error {
  readonly code: string;
  readonly file?: string;
  readonly dataset?: string;
  readonly hint?: string;
  readonly exitCode: ExitCode;

  constructor(message: string, init: LazyLabelErrorInit) {
    super(message);
    this.name = 'LazyLabelError';
    this.code = init.code;
    this.file = init.file;
    this.dataset = init.dataset;
    this.hint = init.hint;
    this.exitCode = init.exitCode ?? ExitCode.dataError;
  }

  /** One line for the terminal: where, what, and what to do. */
  describe(): string {
    const where = [this.file, this.dataset ? `dataset '${this.dataset}'` : undefined].filter(Boolean).join(', ');
    const head = where ? `${where}: ${this.message}` : this.message;
    return this.hint ? `${head} (${this.hint})` : head;
  }
}

/** A usage error: bad flags or arguments (exit code 2). */
export function usageError(message: string, hint?: string): LazyLabelError {
  return new LazyLabelError(message, { code: 'usage', hint, exitCode: ExitCode.usage });
}

export function isLazyLabelError(e: unknown): e is LazyLabelError {
  return e instanceof LazyLabelError;
}

/** An error as a worker thread posts it: structured clone drops the class, so user errors are rebuilt from this. */
export type PostedError = { message: string; user: false } | ({ message: string; user: true } & LazyLabelErrorInit);

export function postableError(e: unknown): PostedError {
  if (isLazyLabelError(e)) return { message: e.message, user: true, code: e.code, file: e.file, dataset: e.dataset, hint: e.hint, exitCode: e.exitCode };
  return { message: e instanceof Error ? e.message : String(e), user: false };
}

/** The error a worker posted, as this thread throws it: the same LazyLabelError for user errors. */
export function revivedError(p: PostedError): Error {
  if (!p.user) return new Error(p.message);
  const { message, user: _user, ...init } = p;
  return new LazyLabelError(message, init);
}

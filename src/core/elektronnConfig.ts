/**
 * Read an ELEKTRONN config (a Python file that ELEKTRONN `execfile`s) WITHOUT running it.
 *
 * A tokenizer, a parser and an evaluator of a small, pure and bounded subset of Python: assignments
 * of literals (strings in every quote style and prefix, numbers, tuples, lists, dicts, True/False/None),
 * names bound earlier, arithmetic, `%` / `.format` / f-string formatting, `+` and `*` on strings and
 * lists, comparisons, list comprehensions (over `range(...)` and any other readable iterable), a few
 * side-effect-free builtins (`range`, `len`, `dict(...)`, `os.path.join`, ...), `del`, and
 * `name[key] = value`, `name.append(...)` / `.extend(...)`.
 *
 * Everything else (imports, calls of anything not on that list, `def`/`if`/`for` blocks, attribute
 * assignments...) is never evaluated: it is listed as unread with its line and the reason. Nothing
 * here does I/O or looks at the environment (the home folder for `os.path.expanduser` is passed in),
 * and every evaluation is bounded in steps, sizes and nesting, so a hostile config can do no harm.
 */

// ------------------------------------------------------------------------------------------------
// values

export type PyValue =
  | { t: 'none' }
  | { t: 'bool'; v: boolean }
  | { t: 'int'; v: bigint }
  | { t: 'float'; v: number }
  | { t: 'str'; v: string }
  | { t: 'list'; v: PyValue[] }
  | { t: 'tuple'; v: PyValue[] }
  /** hash key → [key, value], in insertion order */
  | { t: 'dict'; v: Map<string, [PyValue, PyValue]> }
  | { t: 'range'; start: bigint; stop: bigint; step: bigint }
  /** builtins, module functions and bound methods: only the ones implemented here are ever "called" */
  | { t: 'func'; name: string; self?: PyValue }
  | { t: 'module'; name: string };

/** What a Python value looks like in JSON: tuples and ranges become arrays, dicts plain objects. */
export type JsValue = null | boolean | number | string | JsValue[] | { [key: string]: JsValue };

export const NONE: PyValue = { t: 'none' };
const TRUE: PyValue = { t: 'bool', v: true };
const FALSE: PyValue = { t: 'bool', v: false };
const pyBool = (b: boolean): PyValue => (b ? TRUE : FALSE);
const pyInt = (v: bigint): PyValue => ({ t: 'int', v });
const pyFloat = (v: number): PyValue => ({ t: 'float', v });
const pyStrV = (v: string): PyValue => ({ t: 'str', v });

/** A statement that could not be read; `names` are the variables it would have (re)bound or changed. */
export interface UnreadStatement {
  line: number;
  endLine: number;
  text: string;
  reason: string;
  names: string[];
}

export interface ParsedConfig {
  /** Every readable variable at the end of the file, as JSON-like values. */
  values: Record<string, JsValue>;
  /** The same, with Python types (int vs float, tuple vs list). */
  py: Map<string, PyValue>;
  /** Line of the assignment that gave each variable its final value. */
  lines: Map<string, number>;
  /** Variables whose last assignment could not be read: line and reason. */
  failed: Map<string, { line: number; reason: string }>;
  /** Statements that were not read, in file order. */
  unread: UnreadStatement[];
  /** Variables that skipped code (blocks, unread statements) may assign or change: lines where. */
  touched: Map<string, number[]>;
}

export interface ParseOptions {
  /** Home folder for `os.path.expanduser('~/...')`; without it such calls are left unread. */
  home?: string;
}

/** Raised for anything outside the supported subset; the message is the reason shown to the user. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Evaluation steps one statement may take, and the whole file. */
const MAX_STEPS = 2_000_000;
const MAX_TOTAL_STEPS = 20_000_000;
const MAX_ITEMS = 1_000_000;
const MAX_STR = 10_000_000;
const MAX_INT_BITS = 4096;
const MAX_NEST = 100;
const MAX_EVAL_DEPTH = 1000;
const MAX_TEXT = 300;
/** Nodes one variable may have when turned into JSON (aliasing makes `[[0]*1000]*1000000` cheap to build, huge to expand). */
const MAX_JS_NODES = 2_000_000;

// One evaluation runs at a time (everything here is synchronous): a shared budget of steps and of
// nesting covers the evaluator and the helpers it calls (equality, repr, hashing, conversion).
let budgetLeft = MAX_STEPS;
let totalLeft = MAX_TOTAL_STEPS;
let nesting = 0;

function spend(n = 1): void {
  budgetLeft -= n;
  totalLeft -= n;
  if (budgetLeft < 0) throw new ConfigError('too much computation for one statement: not evaluated');
  if (totalLeft < 0) throw new ConfigError('the config as a whole asks for too much computation: the rest is not evaluated');
}

/** A fresh per-statement budget (the file-wide one keeps counting). */
function newStatementBudget(): void {
  budgetLeft = MAX_STEPS;
  nesting = 0;
}

function deeper<T>(f: () => T): T {
  if (++nesting > MAX_EVAL_DEPTH) {
    nesting--;
    throw new ConfigError('values or expressions nested too deeply (or a list that contains itself)');
  }
  try {
    return f();
  } finally {
    nesting--;
  }
}

// ------------------------------------------------------------------------------------------------
// tokenizer

type TokKind = 'name' | 'number' | 'string' | 'op';

interface Token {
  kind: TokKind;
  text: string;
  line: number;
  start: number;
  end: number;
  /** Bracket depth outside this token (brackets themselves carry the depth they open/close at). */
  depth: number;
  /** Strings: lower-case prefix letters and the text between the quotes, undecoded. */
  prefix?: string;
  body?: string;
}

interface LogicalLine {
  tokens: Token[];
  indent: number;
  line: number;
  endLine: number;
  start: number;
  end: number;
  error?: string;
}

class TokenizeError extends Error {
  constructor(
    message: string,
    readonly toEnd = false,
  ) {
    super(message);
  }
}

const OPERATORS = [
  '**=', '//=', '>>=', '<<=', '...', '!=', '==', '<=', '>=', '**', '//', '<<', '>>', '+=', '-=', '*=', '/=', '%=', '&=', '|=', '^=', '@=', '->', ':=', '<>',
  '+', '-', '*', '/', '%', '&', '|', '^', '~', '<', '>', '(', ')', '[', ']', '{', '}', ',', ':', '.', ';', '=', '@',
];
const STRING_PREFIXES = new Set(['r', 'u', 'b', 'f', 'br', 'rb', 'fr', 'rf', 'ur']);
const CLOSING: Record<string, string> = { ')': '(', ']': '[', '}': '{' };
const NAME_RE = /[A-Za-z_\u00c0-\uffff][A-Za-z0-9_\u00c0-\uffff]*/y;
const NUMBER_RES = [
  /0[xX](?:_?[0-9a-fA-F])+[lL]?/y,
  /0[oO](?:_?[0-7])+/y,
  /0[bB](?:_?[01])+/y,
  /(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?[jJlL]?/y,
];

function matchAt(re: RegExp, src: string, i: number): string | null {
  re.lastIndex = i;
  const m = re.exec(src);
  return m ? m[0] : null;
}

/** Split source into logical lines of tokens (Python's rules: brackets and `\` join physical lines). */
function tokenize(src: string): LogicalLine[] {
  const out: LogicalLine[] = [];
  const n = src.length;
  let i = 0;
  let line = 1;
  while (i < n) {
    // blank lines and comment-only lines
    let j = i;
    let indent = 0;
    while (j < n && (src[j] === ' ' || src[j] === '\t' || src[j] === '\f')) {
      indent += src[j] === '\t' ? 8 - (indent % 8) : 1;
      j++;
    }
    if (j >= n) break;
    if (src[j] === '\n' || src[j] === '#') {
      while (j < n && src[j] !== '\n') j++;
      i = j + 1;
      line++;
      continue;
    }
    const ll: LogicalLine = { tokens: [], indent, line, endLine: line, start: j, end: j };
    i = j;
    const stack: { ch: string; line: number }[] = [];
    try {
      for (;;) {
        if (i >= n) {
          if (stack.length) {
            const open = stack[stack.length - 1]!;
            throw new TokenizeError(`'${open.ch}' opened on line ${open.line} is never closed, so the rest of the file is not read`, true);
          }
          ll.end = i;
          ll.endLine = line;
          break;
        }
        const c = src[i]!;
        if (c === ' ' || c === '\t' || c === '\f') {
          i++;
          continue;
        }
        if (c === '#') {
          while (i < n && src[i] !== '\n') i++;
          continue;
        }
        if (c === '\\') {
          if (src[i + 1] === '\n') {
            i += 2;
            line++;
            continue;
          }
          throw new TokenizeError("a '\\' outside a string must end the line");
        }
        if (c === '\n') {
          if (stack.length) {
            i++;
            line++;
            continue;
          }
          ll.end = i;
          ll.endLine = line;
          i++;
          line++;
          break;
        }
        const depth = stack.length;
        const name = matchAt(NAME_RE, src, i);
        if (name !== null) {
          const q = src[i + name.length];
          if ((q === "'" || q === '"') && STRING_PREFIXES.has(name.toLowerCase())) {
            const s = scanString(src, i, name.length, line);
            ll.tokens.push({ kind: 'string', text: src.slice(i, s.end), line, start: i, end: s.end, depth, prefix: name.toLowerCase(), body: s.body });
            line += s.newlines;
            i = s.end;
            continue;
          }
          ll.tokens.push({ kind: 'name', text: name, line, start: i, end: i + name.length, depth });
          i += name.length;
          continue;
        }
        if (c === "'" || c === '"') {
          const s = scanString(src, i, 0, line);
          ll.tokens.push({ kind: 'string', text: src.slice(i, s.end), line, start: i, end: s.end, depth, prefix: '', body: s.body });
          line += s.newlines;
          i = s.end;
          continue;
        }
        if ((c >= '0' && c <= '9') || (c === '.' && src[i + 1]! >= '0' && src[i + 1]! <= '9')) {
          let num: string | null = null;
          for (const re of NUMBER_RES) {
            num = matchAt(re, src, i);
            if (num) break;
          }
          if (!num) throw new TokenizeError(`cannot read the number at '${src.slice(i, i + 10)}'`);
          const after = src[i + num.length];
          if (after !== undefined && /[A-Za-z0-9_]/.test(after)) throw new TokenizeError(`invalid number '${src.slice(i, i + num.length + 1)}'`);
          ll.tokens.push({ kind: 'number', text: num, line, start: i, end: i + num.length, depth });
          i += num.length;
          continue;
        }
        const op = OPERATORS.find((o) => src.startsWith(o, i));
        if (!op) throw new TokenizeError(`unexpected character '${c}'`);
        if (op === '(' || op === '[' || op === '{') {
          ll.tokens.push({ kind: 'op', text: op, line, start: i, end: i + 1, depth });
          stack.push({ ch: op, line });
        } else if (op === ')' || op === ']' || op === '}') {
          const open = stack.pop();
          if (!open || open.ch !== CLOSING[op]) throw new TokenizeError(`'${op}' does not close ${open ? `'${open.ch}' from line ${open.line}` : 'any bracket'}`);
          ll.tokens.push({ kind: 'op', text: op, line, start: i, end: i + 1, depth: stack.length });
        } else {
          ll.tokens.push({ kind: 'op', text: op, line, start: i, end: i + op.length, depth });
        }
        i += op.length;
      }
    } catch (e) {
      if (!(e instanceof TokenizeError)) throw e;
      ll.error = e.message;
      if (e.toEnd) {
        for (; i < n; i++) if (src[i] === '\n') line++;
        ll.end = n;
        ll.endLine = line;
      } else {
        while (i < n && src[i] !== '\n') i++;
        ll.end = i;
        ll.endLine = line;
        i++;
        line++;
      }
    }
    out.push(ll);
  }
  return out;
}

/** Scan a string literal starting at `start` (prefix of `prefixLen` letters); returns its raw body. */
function scanString(src: string, start: number, prefixLen: number, line: number): { end: number; body: string; newlines: number } {
  const q = src[start + prefixLen]!;
  const triple = src.startsWith(q.repeat(3), start + prefixLen);
  const open = start + prefixLen + (triple ? 3 : 1);
  let i = open;
  let newlines = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (c === '\\') {
      if (src[i + 1] === '\n') newlines++;
      i += 2;
      continue;
    }
    if (c === '\n') {
      if (!triple) throw new TokenizeError('string not closed before the end of the line');
      newlines++;
      i++;
      continue;
    }
    if (triple ? src.startsWith(q.repeat(3), i) : c === q) {
      return { end: i + (triple ? 3 : 1), body: src.slice(open, i), newlines };
    }
    i++;
  }
  throw new TokenizeError(triple ? `triple-quoted string opened on line ${line} is never closed, so the rest of the file is not read` : 'string not closed before the end of the file', triple);
}

// ------------------------------------------------------------------------------------------------
// strings

const SIMPLE_ESCAPES: Record<string, string> = { '\\': '\\', "'": "'", '"': '"', a: '\x07', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\n': '' };

/** Python escape processing for a non-raw string body. */
function decodeEscapes(body: string): string {
  let out = '';
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== '\\') {
      out += c;
      continue;
    }
    const e = body[i + 1];
    if (e === undefined) {
      out += '\\';
      continue;
    }
    if (e in SIMPLE_ESCAPES) {
      out += SIMPLE_ESCAPES[e];
      i++;
    } else if (e >= '0' && e <= '7') {
      const m = /^[0-7]{1,3}/.exec(body.slice(i + 1))![0];
      out += String.fromCodePoint(parseInt(m, 8));
      i += m.length;
    } else if (e === 'x' || e === 'u' || e === 'U') {
      const len = e === 'x' ? 2 : e === 'u' ? 4 : 8;
      const hex = body.slice(i + 2, i + 2 + len);
      if (!new RegExp(`^[0-9a-fA-F]{${len}}$`).test(hex)) throw new ConfigError(`invalid \\${e} escape in a string`);
      const cp = parseInt(hex, 16);
      if (cp > 0x10ffff) throw new ConfigError(`invalid \\${e} escape in a string`);
      out += String.fromCodePoint(cp);
      i += 1 + len;
    } else if (e === 'N') {
      throw new ConfigError('\\N{...} escapes are not supported');
    } else {
      out += '\\' + e; // Python keeps unknown escapes as they are
      i++;
    }
  }
  return out;
}

function checkStr(s: string): string {
  if (s.length > MAX_STR) throw new ConfigError(`a string of ${s.length} characters is too long to build`);
  return s;
}

/** Python's repr of a str: single quotes unless the text has one and no double quote. */
function strRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = q;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === q) out += '\\' + q;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (cp < 0x20 || cp === 0x7f) out += '\\x' + cp.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + q;
}

// ------------------------------------------------------------------------------------------------
// numbers: exact decimal formatting of doubles (Python rounds half to even on the exact binary value)

function exactRational(x: number): { num: bigint; den: bigint } {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, Math.abs(x));
  const hi = view.getUint32(0);
  const lo = view.getUint32(4);
  const expBits = (hi >>> 20) & 0x7ff;
  let mant = (BigInt(hi & 0xfffff) << 32n) | BigInt(lo);
  let e: number;
  if (expBits === 0) e = -1074;
  else {
    mant |= 1n << 52n;
    e = expBits - 1075;
  }
  return e >= 0 ? { num: mant << BigInt(e), den: 1n } : { num: mant, den: 1n << BigInt(-e) };
}

function roundHalfEven(num: bigint, den: bigint): bigint {
  const q = num / den;
  const r2 = (num - q * den) * 2n;
  if (r2 > den) return q + 1n;
  if (r2 === den) return q + (q & 1n);
  return q;
}

/** |x| with p digits after the point, exact rounding. */
function fixedDigits(x: number, p: number): string {
  const { num, den } = exactRational(x);
  const s = roundHalfEven(num * 10n ** BigInt(p), den).toString();
  if (p === 0) return s;
  const padded = s.padStart(p + 1, '0');
  return `${padded.slice(0, -p)}.${padded.slice(-p)}`;
}

/** |x| rounded to p+1 significant digits: the digits and the decimal exponent of the first. */
function expDigits(x: number, p: number): { digits: string; exp: number } {
  if (x === 0) return { digits: '0'.repeat(p + 1), exp: 0 };
  const { num, den } = exactRational(x);
  // the exact exponent: 10^k <= |x| < 10^(k+1) (Math.log10 can be off by one near powers of ten)
  const atLeast = (k: number): boolean => (k >= 0 ? num >= den * 10n ** BigInt(k) : num * 10n ** BigInt(-k) >= den);
  let k = Math.floor(Math.log10(Math.abs(x)));
  while (!atLeast(k)) k--;
  while (atLeast(k + 1)) k++;
  const shift = p - k;
  const scaled = shift >= 0 ? roundHalfEven(num * 10n ** BigInt(shift), den) : roundHalfEven(num, den * 10n ** BigInt(-shift));
  // rounding up to the next power of ten (9.99 -> 10.0) moves the exponent
  if (scaled >= 10n ** BigInt(p + 1)) return { digits: `1${'0'.repeat(p)}`, exp: k + 1 };
  return { digits: scaled.toString(), exp: k };
}

const expSuffix = (exp: number): string => `e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;

function formatExp(x: number, p: number, alt: boolean): string {
  const { digits, exp } = expDigits(x, p);
  const mant = p > 0 || alt ? `${digits[0]}.${digits.slice(1)}` : digits;
  return mant + expSuffix(exp);
}

function stripZeros(s: string): string {
  const e = s.indexOf('e');
  const mant = e >= 0 ? s.slice(0, e) : s;
  const tail = e >= 0 ? s.slice(e) : '';
  return (mant.includes('.') ? mant.replace(/0+$/, '').replace(/\.$/, '') : mant) + tail;
}

/** Python's 'g' for |x| (`sciFrom`: the exponent from which scientific notation is used; 'g' uses p). */
function formatGeneral(x: number, precision: number, alt: boolean, sciFrom?: number): string {
  const p = precision === 0 ? 1 : precision;
  const { exp } = expDigits(x, p - 1);
  const s = exp >= -4 && exp < (sciFrom ?? p) ? fixedDigits(x, p - 1 - exp) : formatExp(x, p - 1, alt);
  return alt ? (s.includes('.') || s.includes('e') ? s : s + '.') : stripZeros(s);
}

/** Python 3's repr of a float (shortest digits that round-trip). */
export function floatRepr(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const sign = x < 0 ? '-' : '';
  const [m, e] = Math.abs(x).toExponential().split('e') as [string, string];
  const digits = m.replace('.', '');
  const exp = Number(e);
  if (exp >= -4 && exp < 16) {
    if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
    const int = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
    const frac = digits.slice(exp + 1) || '0';
    return `${sign}${int}.${frac}`;
  }
  return `${sign}${digits[0]}${digits.length > 1 ? '.' + digits.slice(1) : ''}${expSuffix(exp)}`;
}

function parseNumber(text: string): PyValue {
  let t = text.replace(/_/g, '');
  if (/[jJ]$/.test(t)) throw new ConfigError(`complex number ${text} is not supported`);
  if (/^0[xX]/.test(t)) return pyInt(BigInt(t.replace(/[lL]$/, '')));
  if (/^0[oObB]/.test(t)) return pyInt(BigInt(t));
  if (/[lL]$/.test(t)) t = t.slice(0, -1); // Python 2 long
  if (/^\d+$/.test(t)) {
    if (t.length > 1 && t[0] === '0' && /[1-9]/.test(t)) throw new ConfigError(`${text} is octal in Python 2 and an error in Python 3; write 0o${t.slice(1)} or ${t.replace(/^0+/, '')}`);
    return pyInt(BigInt(t));
  }
  return pyFloat(Number(t));
}

// ------------------------------------------------------------------------------------------------
// value helpers

function typeName(v: PyValue): string {
  switch (v.t) {
    case 'none':
      return 'NoneType';
    case 'func':
      return 'function';
    default:
      return v.t;
  }
}

const isIntLike = (v: PyValue): v is { t: 'int'; v: bigint } | { t: 'bool'; v: boolean } => v.t === 'int' || v.t === 'bool';
const isNumber = (v: PyValue): boolean => v.t === 'int' || v.t === 'bool' || v.t === 'float';
const bigOf = (v: PyValue): bigint => (v.t === 'int' ? v.v : v.t === 'bool' ? (v.v ? 1n : 0n) : 0n);

function toFloat(v: PyValue): number {
  if (v.t === 'float') return v.v;
  const b = bigOf(v);
  const f = Number(b);
  if (!Number.isFinite(f)) throw new ConfigError('integer too large to convert to float');
  return f;
}

function checkInt(b: bigint): PyValue {
  const bits = (b < 0n ? -b : b).toString(16).length * 4;
  if (bits > MAX_INT_BITS) throw new ConfigError('integer result too large');
  return pyInt(b);
}

function rangeLength(r: { start: bigint; stop: bigint; step: bigint }): bigint {
  if (r.step > 0n) return r.stop > r.start ? (r.stop - r.start + r.step - 1n) / r.step : 0n;
  return r.start > r.stop ? (r.start - r.stop - r.step - 1n) / -r.step : 0n;
}

export function pyStr(v: PyValue): string {
  return v.t === 'str' ? v.v : pyRepr(v);
}

/** Python's repr, bounded in length, steps and nesting. */
export function pyRepr(v: PyValue): string {
  const parts: string[] = [];
  let len = 0;
  const put = (x: string): void => {
    len += x.length;
    if (len > MAX_STR) throw new ConfigError(`a string of more than ${MAX_STR} characters is too long to build`);
    parts.push(x);
  };
  const seq = (items: PyValue[], open: string, close: string): void => {
    put(open);
    items.forEach((y, i) => {
      if (i) put(', ');
      rec(y);
    });
    put(close);
  };
  const rec = (x: PyValue): void =>
    deeper(() => {
      spend();
      switch (x.t) {
        case 'none':
          return put('None');
        case 'bool':
          return put(x.v ? 'True' : 'False');
        case 'int':
          return put(x.v.toString());
        case 'float':
          return put(floatRepr(x.v));
        case 'str':
          return put(strRepr(x.v));
        case 'list':
          return seq(x.v, '[', ']');
        case 'tuple':
          if (x.v.length === 1) {
            put('(');
            rec(x.v[0]!);
            return put(',)');
          }
          return seq(x.v, '(', ')');
        case 'dict': {
          put('{');
          let first = true;
          for (const [k, y] of x.v.values()) {
            if (!first) put(', ');
            first = false;
            rec(k);
            put(': ');
            rec(y);
          }
          return put('}');
        }
        case 'range':
          return put(x.step === 1n ? `range(${x.start}, ${x.stop})` : `range(${x.start}, ${x.stop}, ${x.step})`);
        case 'func':
          return put(`<function ${x.name}>`);
        case 'module':
          return put(`<module '${x.name}'>`);
      }
    });
  rec(v);
  return parts.join('');
}

/** JSON view of a value: tuples/ranges → arrays, dicts → objects (keys as Python's str of the key). Bounded in size and nesting. */
export function pyToJs(v: PyValue): JsValue {
  let nodes = 0;
  const rec = (x: PyValue): JsValue =>
    deeper(() => {
      if (++nodes > MAX_JS_NODES) throw new ConfigError(`value too large to import (more than ${MAX_JS_NODES} items in all)`);
      switch (x.t) {
        case 'none':
          return null;
        case 'bool':
          return x.v;
        case 'int':
          return Number(x.v);
        case 'float':
          return x.v;
        case 'str':
          return x.v;
        case 'list':
        case 'tuple':
          return x.v.map(rec);
        case 'range':
          return iterate(x).map(rec);
        case 'dict':
          // fromEntries defines own properties, so a '__proto__' key stays a plain key
          return Object.fromEntries([...x.v.values()].map(([k, y]) => [pyStr(k), rec(y)]));
        case 'func':
        case 'module':
          return pyRepr(x);
      }
    });
  return rec(v);
}

function hashKey(v: PyValue): string {
  return deeper(() => hashKeyInner(v));
}

function hashKeyInner(v: PyValue): string {
  spend();
  switch (v.t) {
    case 'none':
      return 'N';
    case 'bool':
    case 'int':
      return `i:${bigOf(v)}`;
    case 'float':
      return Number.isInteger(v.v) ? `i:${BigInt(v.v)}` : `f:${floatRepr(v.v)}`;
    case 'str':
      return `s:${v.v}`;
    case 'tuple':
      return checkStr(`t:(${v.v.map(hashKey).join(',')})`);
    default:
      throw new ConfigError(`unhashable type: '${typeName(v)}'`);
  }
}

function truthy(v: PyValue): boolean {
  switch (v.t) {
    case 'none':
      return false;
    case 'bool':
      return v.v;
    case 'int':
      return v.v !== 0n;
    case 'float':
      return v.v !== 0;
    case 'str':
      return v.v.length > 0;
    case 'list':
    case 'tuple':
      return v.v.length > 0;
    case 'dict':
      return v.v.size > 0;
    case 'range':
      return rangeLength(v) > 0n;
    default:
      return true;
  }
}

function iterate(v: PyValue): PyValue[] {
  switch (v.t) {
    case 'list':
    case 'tuple':
      return v.v;
    case 'str':
      spend(v.v.length);
      return [...v.v].map(pyStrV);
    case 'dict':
      spend(v.v.size);
      return [...v.v.values()].map(([k]) => k);
    case 'range': {
      const len = rangeLength(v);
      if (len > BigInt(MAX_ITEMS)) throw new ConfigError(`range of ${len} items is too large to read`);
      spend(Number(len));
      const out: PyValue[] = [];
      for (let x = v.start, k = 0n; k < len; k++, x += v.step) out.push(pyInt(x));
      return out;
    }
    default:
      throw new ConfigError(`'${typeName(v)}' object is not iterable`);
  }
}

function checkItems(n: number): void {
  if (n > MAX_ITEMS) throw new ConfigError(`a list of ${n} items is too large to build`);
}

function pyEquals(a: PyValue, b: PyValue): boolean {
  return deeper(() => equalsInner(a, b));
}

function equalsInner(a: PyValue, b: PyValue): boolean {
  spend();
  if (isNumber(a) && isNumber(b)) {
    if (a.t === 'float' || b.t === 'float') return toFloatLoose(a) === toFloatLoose(b);
    return bigOf(a) === bigOf(b);
  }
  if (a.t !== b.t) return false;
  switch (a.t) {
    case 'none':
      return true;
    case 'str':
      return a.v === (b as { v: string }).v;
    case 'list':
    case 'tuple': {
      const bv = (b as { v: PyValue[] }).v;
      return a.v.length === bv.length && a.v.every((x, i) => pyEquals(x, bv[i]!));
    }
    case 'dict': {
      const bv = (b as { v: Map<string, [PyValue, PyValue]> }).v;
      if (a.v.size !== bv.size) return false;
      for (const [k, [, x]] of a.v) {
        const y = bv.get(k);
        if (!y || !pyEquals(x, y[1])) return false;
      }
      return true;
    }
    case 'range': {
      const r = b as typeof a;
      return pyEquals({ t: 'list', v: iterate(a) }, { t: 'list', v: iterate(r) });
    }
    default:
      return a === b;
  }
}

function toFloatLoose(v: PyValue): number {
  return v.t === 'float' ? v.v : Number(bigOf(v));
}

function compare(a: PyValue, b: PyValue, op: string): boolean {
  return deeper(() => compareInner(a, b, op));
}

function compareInner(a: PyValue, b: PyValue, op: string): boolean {
  spend();
  let c: number;
  if (isNumber(a) && isNumber(b)) {
    if (a.t === 'float' || b.t === 'float') {
      const x = toFloatLoose(a);
      const y = toFloatLoose(b);
      if (Number.isNaN(x) || Number.isNaN(y)) return false;
      c = x < y ? -1 : x > y ? 1 : 0;
    } else {
      const x = bigOf(a);
      const y = bigOf(b);
      c = x < y ? -1 : x > y ? 1 : 0;
    }
  } else if (a.t === 'str' && b.t === 'str') {
    c = a.v < b.v ? -1 : a.v > b.v ? 1 : 0;
  } else if ((a.t === 'list' && b.t === 'list') || (a.t === 'tuple' && b.t === 'tuple')) {
    const av = a.v;
    const bv = (b as { v: PyValue[] }).v;
    c = 0;
    for (let i = 0; i < Math.min(av.length, bv.length); i++) {
      if (pyEquals(av[i]!, bv[i]!)) continue;
      c = compare(av[i]!, bv[i]!, '<') ? -1 : 1;
      break;
    }
    if (c === 0) c = av.length < bv.length ? -1 : av.length > bv.length ? 1 : 0;
  } else {
    throw new ConfigError(`'${op}' not supported between '${typeName(a)}' and '${typeName(b)}'`);
  }
  switch (op) {
    case '<':
      return c < 0;
    case '<=':
      return c <= 0;
    case '>':
      return c > 0;
    default:
      return c >= 0;
  }
}

function contains(container: PyValue, item: PyValue): boolean {
  if (container.t === 'str') {
    if (item.t !== 'str') throw new ConfigError(`'in <string>' requires a string on the left, not '${typeName(item)}'`);
    return container.v.includes(item.v);
  }
  if (container.t === 'dict') return container.v.has(hashKey(item));
  if (container.t === 'range') {
    if (!isIntLike(item)) return false;
    const x = bigOf(item);
    const { start, stop, step } = container;
    const inside = step > 0n ? x >= start && x < stop : x <= start && x > stop;
    return inside && (x - start) % step === 0n;
  }
  return iterate(container).some((x) => pyEquals(x, item));
}

// ------------------------------------------------------------------------------------------------
// formatting: printf-style '%' and format specs

interface Spec {
  fill: string;
  align: '' | '<' | '>' | '^' | '=';
  sign: '' | '+' | '-' | ' ';
  alt: boolean;
  zero: boolean;
  width: number;
  precision: number | null;
  type: string;
  /** printf-style ('%'): everything is right-aligned unless '-' (str.format left-aligns strings). */
  printf?: boolean;
}

function pad(body: string, signStr: string, spec: Spec, numeric: boolean): string {
  let align = spec.align || (numeric || spec.printf ? '>' : '<');
  let fill = spec.fill || ' ';
  if (spec.zero && !spec.align && numeric) {
    align = '=';
    fill = '0';
  }
  const total = signStr.length + body.length;
  const missing = Math.max(0, spec.width - total);
  if (missing > MAX_STR) throw new ConfigError('format width too large');
  const filler = fill.repeat(missing);
  switch (align) {
    case '<':
      return signStr + body + filler;
    case '^': {
      const left = fill.repeat(Math.floor(missing / 2));
      const right = fill.repeat(missing - left.length);
      return left + signStr + body + right;
    }
    case '=':
      return signStr + filler + body;
    default:
      return filler + signStr + body;
  }
}

function signOf(negative: boolean, spec: Spec): string {
  if (negative) return '-';
  return spec.sign === '+' ? '+' : spec.sign === ' ' ? ' ' : '';
}

function formatFloat(x: number, spec: Spec, type: string): string {
  const neg = x < 0 || Object.is(x, -0);
  const a = Math.abs(x);
  let body: string;
  if (!Number.isFinite(a)) body = Number.isNaN(a) ? 'nan' : 'inf';
  else {
    const p = spec.precision ?? 6;
    switch (type.toLowerCase()) {
      case 'f':
        body = fixedDigits(a, p) + (spec.alt && p === 0 ? '.' : '');
        break;
      case 'e':
        body = formatExp(a, p, spec.alt);
        break;
      case '%':
        body = (Number.isFinite(a * 100) ? fixedDigits(a * 100, p) : 'inf') + '%';
        break;
      case '':
        if (spec.precision === null) body = floatRepr(a);
        else {
          // like 'g', but scientific from exponent p-1 on, and fixed notation keeps a digit after the point
          body = formatGeneral(a, p, spec.alt, Math.max(p, 1) - 1);
          if (!/[.e]|inf|nan/.test(body)) body += '.0';
        }
        break;
      default:
        body = formatGeneral(a, p, spec.alt);
    }
  }
  if (type === 'E' || type === 'F' || type === 'G') body = body.toUpperCase();
  return pad(body, signOf(neg && !Number.isNaN(x), spec), spec, true);
}

function formatInt(b: bigint, spec: Spec, type: string, minDigits = 0): string {
  const neg = b < 0n;
  const a = neg ? -b : b;
  let body: string;
  let prefix = '';
  switch (type) {
    case 'x':
    case 'X':
      body = a.toString(16);
      prefix = spec.alt ? '0x' : '';
      break;
    case 'o':
      body = a.toString(8);
      prefix = spec.alt ? '0o' : '';
      break;
    case 'b':
      body = a.toString(2);
      prefix = spec.alt ? '0b' : '';
      break;
    default:
      body = a.toString();
  }
  body = body.padStart(minDigits, '0');
  if (type === 'X') {
    body = body.toUpperCase();
    prefix = prefix.toUpperCase();
  }
  return pad(body, signOf(neg, spec) + prefix, spec, true);
}

/** Format one value with a format-spec (shared by '%' and str.format / f-strings). */
function formatWithSpec(v: PyValue, spec: Spec, printf: boolean): string {
  const type = spec.type;
  if (type === 's' || (type === '' && !isNumber(v))) {
    let s = pyStr(v);
    if (spec.precision !== null) s = [...s].slice(0, spec.precision).join('');
    return pad(s, '', spec, false);
  }
  if (type === 'r' || type === 'a') {
    let s = pyRepr(v);
    if (spec.precision !== null) s = [...s].slice(0, spec.precision).join('');
    return pad(s, '', spec, false);
  }
  if (type === 'c') {
    if (v.t === 'str' && [...v.v].length === 1) return pad(v.v, '', spec, false);
    if (isIntLike(v)) return pad(String.fromCodePoint(Number(bigOf(v))), '', spec, false);
    throw new ConfigError(`%c requires an int or a single character, not '${typeName(v)}'`);
  }
  if (!isNumber(v)) throw new ConfigError(`format '${type}' needs a number, not '${typeName(v)}'`);
  if ((type !== '' && 'diuxXob'.includes(type)) || (type === '' && isIntLike(v))) {
    if (type === 'b' && printf) throw new ConfigError("unsupported format character 'b'");
    let b: bigint;
    if (isIntLike(v)) b = bigOf(v);
    else if ((type === 'd' || type === 'i' || type === 'u') && printf) {
      const f = (v as { v: number }).v;
      if (!Number.isFinite(f)) throw new ConfigError(`cannot convert ${floatRepr(f)} to an integer`);
      b = BigInt(Math.trunc(f));
    } else throw new ConfigError(`format '${type}' needs an integer, not a float`);
    const minDigits = printf && spec.precision !== null ? spec.precision : 0;
    if (!printf && spec.precision !== null) throw new ConfigError('precision is not allowed in an integer format');
    return formatInt(b, spec, type === 'i' || type === 'u' ? 'd' : type, minDigits);
  }
  if (type === '' || 'eEfFgG%'.includes(type)) return formatFloat(toFloat(v), spec, type);
  throw new ConfigError(`unsupported format character '${type}'`);
}

const PRINTF_RE = /%(?:\(([^)]*)\))?([#0\- +]*)(\*|\d+)?(?:\.(\*|\d*))?[hlL]?([diouxXeEfFgGcrsa%])?/g;

/** `template % args` with Python's printf-style rules. */
function printfFormat(template: string, args: PyValue): string {
  const positional = args.t === 'tuple' ? args.v : [args];
  const mapping = args.t === 'dict' ? args : null;
  let used = 0;
  let usedMapping = false;
  let out = '';
  let last = 0;
  PRINTF_RE.lastIndex = 0;
  for (let m = PRINTF_RE.exec(template); m; m = PRINTF_RE.exec(template)) {
    out += template.slice(last, m.index);
    last = m.index + m[0].length;
    const [, key, flags = '', width, precision, type] = m;
    if (type === undefined) throw new ConfigError(`incomplete format '${m[0]}'`);
    if (type === '%' && m[0] === '%%') {
      out += '%';
      continue;
    }
    if (width === '*' || precision === '*') throw new ConfigError("'*' widths in '%' formats are not supported");
    let value: PyValue;
    if (key !== undefined) {
      if (!mapping) throw new ConfigError('format requires a mapping');
      const hit = mapping.v.get(hashKey(pyStrV(key)));
      if (!hit) throw new ConfigError(`key '${key}' is missing from the format mapping`);
      value = hit[1];
      usedMapping = true;
    } else {
      if (used >= positional.length) throw new ConfigError('not enough arguments for format string');
      value = positional[used++]!;
    }
    const spec: Spec = {
      fill: ' ',
      align: flags.includes('-') ? '<' : '',
      sign: flags.includes('+') ? '+' : flags.includes(' ') ? ' ' : '',
      alt: flags.includes('#'),
      zero: flags.includes('0') && !flags.includes('-'),
      width: width ? Number(width) : 0,
      precision: precision === undefined ? null : Number(precision || '0'),
      type,
      printf: true,
    };
    out += formatWithSpec(value, spec, true);
    if (out.length > MAX_STR) throw new ConfigError('formatted string too long');
  }
  out += template.slice(last);
  if (!mapping && used < positional.length) throw new ConfigError('not all arguments converted during string formatting');
  if (mapping && !usedMapping && used === 0 && positional.length === 1 && args.t !== 'dict') throw new ConfigError('not all arguments converted during string formatting');
  return checkStr(out);
}

const SPEC_RE = /^(?:(.)?([<>=^]))?([+\- ])?(#)?(0)?(\d+)?(,|_)?(?:\.(\d+))?([bcdeEfFgGnosxX%])?$/su;

function parseSpec(text: string): Spec {
  const m = SPEC_RE.exec(text);
  if (!m) throw new ConfigError(`format spec '${text}' is not supported`);
  if (m[7]) throw new ConfigError(`thousands separators in format spec '${text}' are not supported`);
  if (m[9] === 'n') throw new ConfigError("format type 'n' depends on the locale and is not supported");
  return {
    fill: m[1] ?? '',
    align: (m[2] ?? '') as Spec['align'],
    sign: (m[3] ?? '') as Spec['sign'],
    alt: m[4] !== undefined,
    zero: m[5] !== undefined,
    width: m[6] ? Number(m[6]) : 0,
    precision: m[8] !== undefined ? Number(m[8]) : null,
    type: m[9] ?? '',
  };
}

function applyConversion(v: PyValue, conv: string | undefined): PyValue {
  if (!conv) return v;
  if (conv === 's') return pyStrV(pyStr(v));
  if (conv === 'r' || conv === 'a') return pyStrV(pyRepr(v));
  throw new ConfigError(`unknown conversion '!${conv}'`);
}

function formatField(v: PyValue, conv: string | undefined, specText: string): string {
  const value = applyConversion(v, conv);
  if (specText === '') return pyStr(value);
  return formatWithSpec(value, parseSpec(specText), false);
}

/** str.format with automatic/positional/keyword fields and the usual format specs. */
function strFormat(template: string, args: PyValue[], kwargs: Map<string, PyValue>): string {
  let out = '';
  let auto = 0;
  for (let i = 0; i < template.length; i++) {
    const c = template[i]!;
    if (c === '{' && template[i + 1] === '{') {
      out += '{';
      i++;
      continue;
    }
    if (c === '}' && template[i + 1] === '}') {
      out += '}';
      i++;
      continue;
    }
    if (c === '}') throw new ConfigError("single '}' in a format string");
    if (c !== '{') {
      out += c;
      continue;
    }
    const close = template.indexOf('}', i);
    if (close < 0) throw new ConfigError("single '{' in a format string");
    const field = template.slice(i + 1, close);
    if (field.includes('{')) throw new ConfigError('nested format fields are not supported');
    const m = /^([^!:]*)(?:!([rsa]))?(?::(.*))?$/s.exec(field);
    if (!m) throw new ConfigError(`format field '{${field}}' is not supported`);
    const name = m[1]!;
    let value: PyValue | undefined;
    if (name === '') value = args[auto++];
    else if (/^\d+$/.test(name)) value = args[Number(name)];
    else if (/^[A-Za-z_]\w*$/.test(name)) value = kwargs.get(name);
    else throw new ConfigError(`format field '{${field}}' is not supported`);
    if (value === undefined) throw new ConfigError(`format field '{${field}}' has no value`);
    out += formatField(value, m[2], m[3] ?? '');
    if (out.length > MAX_STR) throw new ConfigError('formatted string too long');
    i = close;
  }
  return checkStr(out);
}

// ------------------------------------------------------------------------------------------------
// expressions

type Expr =
  | { k: 'const'; v: PyValue }
  | { k: 'fstr'; parts: (string | { expr: Expr; conv?: string; spec: Expr | null })[] }
  | { k: 'name'; id: string }
  | { k: 'tuple' | 'list'; items: Expr[] }
  | { k: 'dict'; entries: [Expr, Expr][] }
  | { k: 'comp'; elt: Expr; clauses: Clause[]; gen: boolean }
  | { k: 'unary'; op: string; x: Expr }
  | { k: 'bin'; op: string; a: Expr; b: Expr }
  | { k: 'bool'; op: 'and' | 'or'; xs: Expr[] }
  | { k: 'not'; x: Expr }
  | { k: 'cmp'; first: Expr; ops: string[]; rest: Expr[] }
  | { k: 'ifexp'; test: Expr; body: Expr; orelse: Expr }
  | { k: 'call'; fn: Expr; args: Expr[]; kwargs: [string, Expr][]; text: string }
  | { k: 'attr'; obj: Expr; name: string; text: string }
  | { k: 'sub'; obj: Expr; index: Expr }
  | { k: 'slice'; lo: Expr | null; hi: Expr | null; step: Expr | null };

type Clause = { k: 'for'; target: Expr; iter: Expr } | { k: 'if'; cond: Expr };

const RESERVED = new Set(['and', 'as', 'assert', 'async', 'await', 'break', 'class', 'continue', 'def', 'del', 'elif', 'else', 'except', 'finally', 'for', 'from', 'global', 'if', 'import', 'in', 'is', 'lambda', 'nonlocal', 'not', 'or', 'pass', 'raise', 'return', 'try', 'while', 'with', 'yield']);
const UNSUPPORTED_BINOPS = new Set(['|', '^', '&', '<<', '>>', '@']);
const COMPARE_OPS = new Set(['<', '>', '==', '>=', '<=', '!=', '<>']);

function syntax(message: string): ConfigError {
  return new ConfigError(`cannot parse: ${message}`);
}

class Parser {
  private pos = 0;
  private nest = 0;

  constructor(
    private readonly toks: Token[],
    private readonly src: string,
  ) {}

  private peek(o = 0): Token | undefined {
    return this.toks[this.pos + o];
  }
  atEnd(): boolean {
    return this.pos >= this.toks.length;
  }
  private isOp(s: string, o = 0): boolean {
    const t = this.peek(o);
    return t !== undefined && t.kind === 'op' && t.text === s;
  }
  private isKw(s: string, o = 0): boolean {
    const t = this.peek(o);
    return t !== undefined && t.kind === 'name' && t.text === s;
  }
  private next(): Token {
    const t = this.toks[this.pos++];
    if (!t) throw syntax('the statement ends too early');
    return t;
  }
  private expectOp(s: string): Token {
    if (!this.isOp(s)) throw syntax(`expected '${s}' ${this.atEnd() ? 'before the end of the statement' : `but found '${this.peek()!.text}'`}`);
    return this.next();
  }
  private nested<T>(f: () => T): T {
    if (++this.nest > MAX_NEST) throw new ConfigError('expression nested too deeply');
    try {
      return f();
    } finally {
      this.nest--;
    }
  }
  private textFrom(startTok: number): string {
    const a = this.toks[startTok]!;
    const b = this.toks[this.pos - 1]!;
    return this.src.slice(a.start, b.end);
  }

  /** The whole token list as one expression (a bare `a, b` is a tuple). */
  parseAll(): Expr {
    const e = this.parseTestList();
    if (!this.atEnd()) throw syntax(`unexpected '${this.peek()!.text}'`);
    return e;
  }

  private parseTestList(): Expr {
    const first = this.parseTest();
    if (!this.isOp(',')) return first;
    const items = [first];
    while (this.isOp(',')) {
      this.next();
      if (this.atEnd() || this.isOp('=')) break;
      items.push(this.parseTest());
    }
    return { k: 'tuple', items };
  }

  parseTest(): Expr {
    return this.nested(() => {
      if (this.isKw('lambda')) throw new ConfigError('lambda functions are not supported');
      if (this.isKw('yield') || this.isKw('await')) throw new ConfigError(`'${this.peek()!.text}' is not supported`);
      const body = this.parseOr();
      if (!this.isKw('if')) return body;
      this.next();
      const test = this.parseOr();
      if (!this.isKw('else')) throw syntax("expected 'else' in a conditional expression");
      this.next();
      const orelse = this.parseTest();
      return { k: 'ifexp', test, body, orelse };
    });
  }

  private parseOr(): Expr {
    const xs = [this.parseAnd()];
    while (this.isKw('or')) {
      this.next();
      xs.push(this.parseAnd());
    }
    return xs.length === 1 ? xs[0]! : { k: 'bool', op: 'or', xs };
  }

  private parseAnd(): Expr {
    const xs = [this.parseNot()];
    while (this.isKw('and')) {
      this.next();
      xs.push(this.parseNot());
    }
    return xs.length === 1 ? xs[0]! : { k: 'bool', op: 'and', xs };
  }

  private parseNot(): Expr {
    if (this.isKw('not')) {
      this.next();
      return this.nested(() => ({ k: 'not', x: this.parseNot() }));
    }
    return this.parseComparison();
  }

  private parseComparison(): Expr {
    const first = this.parseBitwise();
    const ops: string[] = [];
    const rest: Expr[] = [];
    for (;;) {
      const t = this.peek();
      if (!t) break;
      let op: string | null = null;
      if (t.kind === 'op' && COMPARE_OPS.has(t.text)) {
        op = t.text === '<>' ? '!=' : t.text;
        this.next();
      } else if (this.isKw('in')) {
        op = 'in';
        this.next();
      } else if (this.isKw('not') && this.isKw('in', 1)) {
        op = 'not in';
        this.pos += 2;
      } else if (this.isKw('is')) {
        this.next();
        op = 'is';
        if (this.isKw('not')) {
          this.next();
          op = 'is not';
        }
      }
      if (op === null) break;
      ops.push(op);
      rest.push(this.parseBitwise());
    }
    return ops.length ? { k: 'cmp', first, ops, rest } : first;
  }

  private parseBitwise(): Expr {
    const a = this.parseArith();
    const t = this.peek();
    if (t && t.kind === 'op' && UNSUPPORTED_BINOPS.has(t.text)) throw new ConfigError(`operator '${t.text}' is not supported`);
    return a;
  }

  private parseArith(): Expr {
    let a = this.parseTerm();
    while (this.isOp('+') || this.isOp('-')) {
      const op = this.next().text;
      a = { k: 'bin', op, a, b: this.parseTerm() };
    }
    return a;
  }

  private parseTerm(): Expr {
    let a = this.parseFactor();
    while (this.isOp('*') || this.isOp('/') || this.isOp('//') || this.isOp('%') || this.isOp('@')) {
      const op = this.next().text;
      if (op === '@') throw new ConfigError("operator '@' is not supported");
      a = { k: 'bin', op, a, b: this.parseFactor() };
    }
    return a;
  }

  private parseFactor(): Expr {
    return this.nested((): Expr => {
      if (this.isOp('-') || this.isOp('+') || this.isOp('~')) {
        const op = this.next().text;
        if (op === '~') throw new ConfigError("operator '~' is not supported");
        return { k: 'unary', op, x: this.parseFactor() };
      }
      const base = this.parsePrimary();
      if (this.isOp('**')) {
        this.next();
        return { k: 'bin', op: '**', a: base, b: this.parseFactor() };
      }
      return base;
    });
  }

  private parsePrimary(): Expr {
    const startTok = this.pos;
    let e = this.parseAtom();
    for (;;) {
      if (this.isOp('(')) {
        this.next();
        const { args, kwargs } = this.parseCallArgs();
        e = { k: 'call', fn: e, args, kwargs, text: this.textFrom(startTok) };
      } else if (this.isOp('[')) {
        this.next();
        const index = this.parseSubscript();
        this.expectOp(']');
        e = { k: 'sub', obj: e, index };
      } else if (this.isOp('.')) {
        this.next();
        const t = this.next();
        if (t.kind !== 'name') throw syntax(`expected an attribute name after '.', found '${t.text}'`);
        e = { k: 'attr', obj: e, name: t.text, text: this.textFrom(startTok) };
      } else return e;
    }
  }

  private parseCallArgs(): { args: Expr[]; kwargs: [string, Expr][] } {
    const args: Expr[] = [];
    const kwargs: [string, Expr][] = [];
    while (!this.isOp(')')) {
      if (this.isOp('*') || this.isOp('**')) throw new ConfigError('*args and **kwargs in calls are not supported');
      const t = this.peek();
      if (t?.kind === 'name' && this.isOp('=', 1)) {
        this.pos += 2;
        kwargs.push([t.text, this.parseTest()]);
      } else {
        if (kwargs.length) throw syntax('positional argument after a keyword argument');
        const x = this.parseTest();
        if (this.isKw('for')) args.push(this.parseComprehension(x, true));
        else args.push(x);
      }
      if (!this.isOp(',')) break;
      this.next();
    }
    this.expectOp(')');
    return { args, kwargs };
  }

  private parseSubscript(): Expr {
    const parts: Expr[] = [];
    for (;;) {
      parts.push(this.parseSliceItem());
      if (!this.isOp(',')) break;
      this.next();
      if (this.isOp(']')) break;
    }
    return parts.length === 1 ? parts[0]! : { k: 'tuple', items: parts };
  }

  private parseSliceItem(): Expr {
    let lo: Expr | null = null;
    if (!this.isOp(':')) {
      lo = this.parseTest();
      if (!this.isOp(':')) return lo;
    }
    this.next();
    const hi = this.isOp(':') || this.isOp(']') || this.isOp(',') ? null : this.parseTest();
    let step: Expr | null = null;
    if (this.isOp(':')) {
      this.next();
      step = this.isOp(']') || this.isOp(',') ? null : this.parseTest();
    }
    return { k: 'slice', lo, hi, step };
  }

  private parseComprehension(elt: Expr, gen: boolean): Expr {
    const clauses: Clause[] = [];
    while (this.isKw('for') || this.isKw('if')) {
      if (this.next().text === 'for') {
        const target = this.parseTargetList();
        if (!this.isKw('in')) throw syntax("expected 'in' in a comprehension");
        this.next();
        clauses.push({ k: 'for', target, iter: this.parseOr() });
      } else {
        clauses.push({ k: 'if', cond: this.parseOr() });
      }
    }
    return { k: 'comp', elt, clauses, gen };
  }

  private parseTargetList(): Expr {
    const items = [this.parseBitwise()];
    while (this.isOp(',')) {
      this.next();
      if (this.isKw('in')) break;
      items.push(this.parseBitwise());
    }
    return items.length === 1 ? items[0]! : { k: 'tuple', items };
  }

  private parseAtom(): Expr {
    const t = this.next();
    if (t.kind === 'number') return { k: 'const', v: parseNumber(t.text) };
    if (t.kind === 'string') return this.parseStrings(t);
    if (t.kind === 'name') {
      if (t.text === 'True') return { k: 'const', v: TRUE };
      if (t.text === 'False') return { k: 'const', v: FALSE };
      if (t.text === 'None') return { k: 'const', v: NONE };
      if (t.text === 'lambda') throw new ConfigError('lambda functions are not supported');
      if (RESERVED.has(t.text)) throw syntax(`unexpected '${t.text}'`);
      return { k: 'name', id: t.text };
    }
    switch (t.text) {
      case '(': {
        if (this.isOp(')')) {
          this.next();
          return { k: 'tuple', items: [] };
        }
        if (this.isKw('yield')) throw new ConfigError("'yield' is not supported");
        if (this.isOp('*')) throw new ConfigError('starred expressions are not supported');
        const first = this.parseTest();
        if (this.isKw('for')) {
          const c = this.parseComprehension(first, true);
          this.expectOp(')');
          return c;
        }
        if (!this.isOp(',')) {
          this.expectOp(')');
          return first;
        }
        const items = [first];
        while (this.isOp(',')) {
          this.next();
          if (this.isOp(')')) break;
          if (this.isOp('*')) throw new ConfigError('starred expressions are not supported');
          items.push(this.parseTest());
        }
        this.expectOp(')');
        return { k: 'tuple', items };
      }
      case '[': {
        if (this.isOp(']')) {
          this.next();
          return { k: 'list', items: [] };
        }
        if (this.isOp('*')) throw new ConfigError('starred expressions are not supported');
        const first = this.parseTest();
        if (this.isKw('for')) {
          const c = this.parseComprehension(first, false);
          this.expectOp(']');
          return c;
        }
        const items = [first];
        while (this.isOp(',')) {
          this.next();
          if (this.isOp(']')) break;
          if (this.isOp('*')) throw new ConfigError('starred expressions are not supported');
          items.push(this.parseTest());
        }
        this.expectOp(']');
        return { k: 'list', items };
      }
      case '{': {
        if (this.isOp('}')) {
          this.next();
          return { k: 'dict', entries: [] };
        }
        if (this.isOp('**')) throw new ConfigError('**-unpacking in dicts is not supported');
        const key = this.parseTest();
        if (!this.isOp(':')) throw new ConfigError('set literals are not supported');
        this.next();
        const entries: [Expr, Expr][] = [[key, this.parseTest()]];
        if (this.isKw('for')) throw new ConfigError('dict comprehensions are not supported');
        while (this.isOp(',')) {
          this.next();
          if (this.isOp('}')) break;
          if (this.isOp('**')) throw new ConfigError('**-unpacking in dicts is not supported');
          const k = this.parseTest();
          this.expectOp(':');
          entries.push([k, this.parseTest()]);
        }
        this.expectOp('}');
        return { k: 'dict', entries };
      }
      case '...':
        throw new ConfigError('Ellipsis is not supported');
      default:
        throw syntax(`unexpected '${t.text}'`);
    }
  }

  /** One or more adjacent string literals (implicit concatenation), f-strings included. */
  private parseStrings(first: Token): Expr {
    const toks = [first];
    while (this.peek()?.kind === 'string') toks.push(this.next());
    const bytes = toks.filter((t) => t.prefix!.includes('b'));
    if (bytes.length) throw new ConfigError('bytes literals are not supported');
    const parts: (string | { expr: Expr; conv?: string; spec: Expr | null })[] = [];
    let hasF = false;
    for (const t of toks) {
      const raw = t.prefix!.includes('r');
      if (t.prefix!.includes('f')) {
        hasF = true;
        parts.push(...parseFString(t.body!, raw));
      } else parts.push(raw ? t.body! : decodeEscapes(t.body!));
    }
    if (!hasF) return { k: 'const', v: pyStrV(checkStr(parts.join(''))) };
    return { k: 'fstr', parts };
  }
}

/** Split an f-string body into literal text and `{expr!conv:spec}` fields; each expression is parsed like any other. */
function parseFString(body: string, raw: boolean): (string | { expr: Expr; conv?: string; spec: Expr | null })[] {
  const parts: (string | { expr: Expr; conv?: string; spec: Expr | null })[] = [];
  let lit = '';
  const flush = (): void => {
    if (lit) parts.push(raw ? lit : decodeEscapes(lit));
    lit = '';
  };
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if ((c === '{' || c === '}') && body[i + 1] === c) {
      lit += c;
      i++;
      continue;
    }
    if (c === '}') throw new ConfigError("single '}' in an f-string");
    if (c !== '{') {
      lit += c;
      continue;
    }
    flush();
    // find the end of the expression: the first top-level '!', ':' or '}' outside brackets and quotes
    let j = i + 1;
    let depth = 0;
    let quote: string | null = null;
    let exprEnd = -1;
    for (; j < body.length; j++) {
      const d = body[j]!;
      if (quote) {
        if (d === quote) quote = null;
        continue;
      }
      if (d === "'" || d === '"') quote = d;
      else if (d === '(' || d === '[' || d === '{') depth++;
      else if (d === ')' || d === ']' || (d === '}' && depth > 0)) depth--;
      else if (depth === 0 && (d === '}' || d === ':' || (d === '!' && body[j + 1] !== '='))) {
        exprEnd = j;
        break;
      }
    }
    if (exprEnd < 0) throw new ConfigError("f-string field is not closed with '}'");
    const exprText = body.slice(i + 1, exprEnd);
    if (/=\s*$/.test(exprText) && !/[=!<>]=\s*$/.test(exprText)) throw new ConfigError("'=' in f-string fields is not supported");
    const expr = parseExpressionText(exprText);
    let k = exprEnd;
    let conv: string | undefined;
    if (body[k] === '!') {
      conv = body[k + 1];
      k += 2;
    }
    let spec: Expr | null = null;
    if (body[k] === ':') {
      const close = body.indexOf('}', k);
      if (close < 0) throw new ConfigError("f-string field is not closed with '}'");
      const specText = body.slice(k + 1, close);
      if (specText.includes('{')) throw new ConfigError('nested fields in f-string format specs are not supported');
      spec = { k: 'const', v: pyStrV(specText) };
      k = close;
    }
    if (body[k] !== '}') throw new ConfigError("f-string field is not closed with '}'");
    parts.push({ expr, ...(conv !== undefined ? { conv } : {}), spec });
    i = k;
  }
  flush();
  return parts;
}

function parseExpressionText(text: string): Expr {
  const lines = tokenize(`(${text.replace(/\n/g, ' ')})`);
  if (lines.length !== 1 || lines[0]!.error) throw new ConfigError(`cannot parse the expression '${text}'${lines[0]?.error ? `: ${lines[0].error}` : ''}`);
  return new Parser(lines[0]!.tokens, `(${text.replace(/\n/g, ' ')})`).parseAll();
}

// ------------------------------------------------------------------------------------------------
// evaluation

type Binding = { ok: true; value: PyValue; line: number } | { ok: false; reason: string; line: number };

/** Builtins that are implemented; anything else that is called is reported, never run. */
const BUILTINS = new Set(['range', 'xrange', 'len', 'list', 'tuple', 'dict', 'int', 'float', 'str', 'bool', 'abs', 'min', 'max', 'sum', 'enumerate', 'zip', 'sorted', 'reversed']);
/** Known Python builtins and their likes that are never called: calling them gives a clear reason. */
const NEVER_CALLED = new Set([
  'exec', 'eval', 'execfile', 'compile', 'open', 'file', '__import__', 'getattr', 'setattr', 'delattr', 'globals', 'locals', 'vars', 'input', 'raw_input', 'reload', 'print', 'map', 'filter',
  'reduce', 'iter', 'next', 'type', 'isinstance', 'issubclass', 'hasattr', 'id', 'hash', 'object', 'super', 'format', 'repr', 'chr', 'ord', 'round', 'pow', 'divmod', 'any', 'all', 'set',
  'frozenset', 'bytes', 'bytearray', 'memoryview', 'help', 'dir', 'exit', 'quit', 'breakpoint', 'callable', 'classmethod', 'staticmethod', 'property', 'unicode', 'long', 'basestring',
  'apply', 'buffer', 'coerce', 'intern', 'unichr', 'cmp', 'complex', 'bin', 'hex', 'oct', 'slice', 'ascii',
]);
const OS_PATH_FUNCS = new Set(['join', 'expanduser', 'basename', 'dirname']);
const STR_METHODS = new Set(['format', 'join', 'replace', 'lower', 'upper', 'strip', 'lstrip', 'rstrip', 'zfill', 'startswith', 'endswith']);
const LIST_METHODS = new Set(['append', 'extend']);
const DICT_METHODS = new Set(['get', 'keys', 'values', 'items']);

class Evaluator {
  readonly scope = new Map<string, Binding>();
  private locals: Map<string, PyValue>[] = [];

  constructor(private readonly home: string | undefined) {}

  private tick(n = 1): void {
    spend(n);
  }

  lookup(id: string): PyValue {
    for (let i = this.locals.length - 1; i >= 0; i--) {
      const v = this.locals[i]!.get(id);
      if (v !== undefined) return v;
    }
    const b = this.scope.get(id);
    if (b) {
      if (b.ok) return b.value;
      throw new ConfigError(`'${id}' could not be read (line ${b.line}: ${b.reason})`);
    }
    if (BUILTINS.has(id) || NEVER_CALLED.has(id)) return { t: 'func', name: id };
    if (id === 'os') return { t: 'module', name: 'os' };
    throw new ConfigError(`name '${id}' is not defined`);
  }

  eval(e: Expr): PyValue {
    return deeper(() => {
      this.tick();
      return this.evalInner(e);
    });
  }

  private evalInner(e: Expr): PyValue {
    switch (e.k) {
      case 'const':
        return e.v;
      case 'fstr': {
        let out = '';
        for (const p of e.parts) {
          if (typeof p === 'string') out += p;
          else {
            const spec = p.spec ? pyStr(this.eval(p.spec)) : '';
            out += formatField(this.eval(p.expr), p.conv, spec);
          }
          checkStr(out);
        }
        return pyStrV(out);
      }
      case 'name':
        return this.lookup(e.id);
      case 'tuple':
      case 'list': {
        checkItems(e.items.length);
        const v = e.items.map((x) => this.eval(x));
        return e.k === 'tuple' ? { t: 'tuple', v } : { t: 'list', v };
      }
      case 'dict': {
        const m = new Map<string, [PyValue, PyValue]>();
        for (const [ke, ve] of e.entries) {
          const k = this.eval(ke);
          m.set(hashKey(k), [k, this.eval(ve)]);
        }
        return { t: 'dict', v: m };
      }
      case 'comp': {
        const out: PyValue[] = [];
        this.locals.push(new Map());
        try {
          this.runClauses(e.clauses, 0, () => {
            out.push(this.eval(e.elt));
            checkItems(out.length);
          });
        } finally {
          this.locals.pop();
        }
        return { t: 'list', v: out };
      }
      case 'unary': {
        const x = this.eval(e.x);
        if (x.t === 'float') return pyFloat(e.op === '-' ? -x.v : x.v);
        if (isIntLike(x)) return pyInt(e.op === '-' ? -bigOf(x) : bigOf(x));
        throw new ConfigError(`bad operand type for unary ${e.op}: '${typeName(x)}'`);
      }
      case 'bin':
        return this.binary(e.op, this.eval(e.a), this.eval(e.b));
      case 'bool': {
        let v: PyValue = NONE;
        for (const x of e.xs) {
          v = this.eval(x);
          if (e.op === 'and' ? !truthy(v) : truthy(v)) return v;
        }
        return v;
      }
      case 'not':
        return pyBool(!truthy(this.eval(e.x)));
      case 'cmp': {
        let left = this.eval(e.first);
        for (let i = 0; i < e.ops.length; i++) {
          const right = this.eval(e.rest[i]!);
          if (!this.compareOp(e.ops[i]!, left, right)) return FALSE;
          left = right;
        }
        return TRUE;
      }
      case 'ifexp':
        return truthy(this.eval(e.test)) ? this.eval(e.body) : this.eval(e.orelse);
      case 'call':
        return this.call(e);
      case 'attr':
        return this.attribute(this.eval(e.obj), e.name, e.text);
      case 'sub':
        return this.subscript(this.eval(e.obj), e.index);
      case 'slice':
        throw new ConfigError('a slice can only be used inside [...]');
    }
  }

  private runClauses(clauses: Clause[], i: number, emit: () => void): void {
    if (i === clauses.length) {
      emit();
      return;
    }
    const c = clauses[i]!;
    if (c.k === 'if') {
      if (truthy(this.eval(c.cond))) this.runClauses(clauses, i + 1, emit);
      return;
    }
    for (const item of iterate(this.eval(c.iter))) {
      this.tick();
      this.bindLocal(c.target, item);
      this.runClauses(clauses, i + 1, emit);
    }
  }

  private bindLocal(target: Expr, value: PyValue): void {
    const frame = this.locals[this.locals.length - 1]!;
    if (target.k === 'name') {
      frame.set(target.id, value);
      return;
    }
    if (target.k === 'tuple' || target.k === 'list') {
      const items = iterate(value);
      if (items.length !== target.items.length) throw new ConfigError(`cannot unpack ${items.length} values into ${target.items.length} names`);
      target.items.forEach((t, i) => this.bindLocal(t, items[i]!));
      return;
    }
    throw new ConfigError('only names can be loop variables');
  }

  private compareOp(op: string, a: PyValue, b: PyValue): boolean {
    switch (op) {
      case '==':
        return pyEquals(a, b);
      case '!=':
        return !pyEquals(a, b);
      case 'in':
        return contains(b, a);
      case 'not in':
        return !contains(b, a);
      case 'is':
      case 'is not': {
        const singleton = (v: PyValue): boolean => v.t === 'none' || v.t === 'bool';
        if (!singleton(a) && !singleton(b)) throw new ConfigError(`'${op}' is only supported with None, True or False`);
        const same = a.t === b.t && (a.t === 'none' || (a as { v: boolean }).v === (b as { v: boolean }).v);
        return op === 'is' ? same : !same;
      }
      default:
        return compare(a, b, op);
    }
  }

  binary(op: string, a: PyValue, b: PyValue): PyValue {
    if (op === '%' && a.t === 'str') return pyStrV(printfFormat(a.v, b));
    if (op === '+') {
      if (a.t === 'str' && b.t === 'str') return pyStrV(checkStr(a.v + b.v));
      if ((a.t === 'list' && b.t === 'list') || (a.t === 'tuple' && b.t === 'tuple')) {
        checkItems(a.v.length + b.v.length);
        this.tick(a.v.length + b.v.length);
        return { t: a.t, v: [...a.v, ...b.v] };
      }
    }
    if (op === '*') {
      const seq = a.t === 'str' || a.t === 'list' || a.t === 'tuple' ? a : b.t === 'str' || b.t === 'list' || b.t === 'tuple' ? b : null;
      const times = seq === a ? b : a;
      if (seq && isIntLike(times)) {
        const n = bigOf(times) < 0n ? 0n : bigOf(times);
        if (seq.t === 'str') {
          if (BigInt(seq.v.length) * n > BigInt(MAX_STR)) throw new ConfigError(`a string of ${BigInt(seq.v.length) * n} characters is too long to build`);
          return pyStrV(seq.v.repeat(Number(n)));
        }
        const items = seq.v as PyValue[];
        if (BigInt(items.length) * n > BigInt(MAX_ITEMS)) throw new ConfigError(`a list of ${BigInt(items.length) * n} items is too large to build`);
        this.tick(items.length * Number(n));
        const out: PyValue[] = [];
        for (let k = 0n; k < n; k++) out.push(...items);
        return { t: seq.t as 'list' | 'tuple', v: out };
      }
    }
    if (!isNumber(a) || !isNumber(b)) throw new ConfigError(`unsupported operand types for ${op}: '${typeName(a)}' and '${typeName(b)}'`);
    if (a.t !== 'float' && b.t !== 'float') return this.intBinary(op, bigOf(a), bigOf(b));
    return pyFloat(floatBinary(op, toFloat(a), toFloat(b)));
  }

  private intBinary(op: string, x: bigint, y: bigint): PyValue {
    switch (op) {
      case '+':
        return checkInt(x + y);
      case '-':
        return checkInt(x - y);
      case '*':
        return checkInt(x * y);
      case '/': {
        if (y === 0n) throw new ConfigError('division by zero');
        if (x % y !== 0n) {
          const py2 = floorDiv(x, y);
          throw new ConfigError(`${x} / ${y} divides integers: Python 2 (ELEKTRONN) gives ${py2}, Python 3 gives ${floatRepr(Number(x) / Number(y))}; write ${x} // ${y} or ${x}.0 / ${y}`);
        }
        return pyFloat(Number(x / y));
      }
      case '//':
        if (y === 0n) throw new ConfigError('integer division by zero');
        return pyInt(floorDiv(x, y));
      case '%': {
        if (y === 0n) throw new ConfigError('integer modulo by zero');
        return pyInt(x - floorDiv(x, y) * y);
      }
      case '**': {
        if (y < 0n) return pyFloat(floatBinary('**', Number(x), Number(y)));
        const bits = (x < 0n ? -x : x).toString(2).length;
        if (x !== 0n && x !== 1n && x !== -1n && BigInt(bits - 1) * y > BigInt(MAX_INT_BITS)) throw new ConfigError('integer result too large');
        return checkInt(x ** y);
      }
      default:
        throw new ConfigError(`operator '${op}' is not supported`);
    }
  }

  private call(e: Extract<Expr, { k: 'call' }>): PyValue {
    const refuse = (): ConfigError => {
      const what = e.text.length > 60 ? `${e.text.slice(0, 57)}...` : e.text;
      return new ConfigError(`${what} is a call, and calls are never executed (lazylabel reads configs, it does not run them)`);
    };
    let fn: PyValue;
    try {
      fn = this.eval(e.fn);
    } catch (err) {
      // `glob.glob(...)` after an unread `import glob`: say that it is a call, not that glob is undefined
      if (err instanceof ConfigError && /^name '.*' is not defined$/.test(err.message)) throw refuse();
      throw err;
    }
    if (fn.t !== 'func' || !isImplemented(fn)) throw refuse();
    const args = e.args.map((a) => this.eval(a));
    const kwargs = new Map<string, PyValue>();
    for (const [k, v] of e.kwargs) kwargs.set(k, this.eval(v));
    return this.callBuiltin(fn, args, kwargs);
  }

  private attribute(obj: PyValue, name: string, text: string): PyValue {
    if (obj.t === 'module') {
      if (obj.name === 'os' && name === 'path') return { t: 'module', name: 'os.path' };
      return { t: 'func', name: `${obj.name}.${name}` };
    }
    if (obj.t === 'str' && STR_METHODS.has(name)) return { t: 'func', name: `str.${name}`, self: obj };
    if (obj.t === 'list' && LIST_METHODS.has(name)) return { t: 'func', name: `list.${name}`, self: obj };
    if (obj.t === 'dict' && DICT_METHODS.has(name)) return { t: 'func', name: `dict.${name}`, self: obj };
    throw new ConfigError(`attribute access ${text} is not supported`);
  }

  subscript(obj: PyValue, indexExpr: Expr): PyValue {
    if (indexExpr.k === 'slice') {
      const part = (x: Expr | null): bigint | null => {
        if (!x) return null;
        const v = this.eval(x);
        if (v.t === 'none') return null;
        if (!isIntLike(v)) throw new ConfigError('slice indices must be integers');
        return bigOf(v);
      };
      const lo = part(indexExpr.lo);
      const hi = part(indexExpr.hi);
      const step = part(indexExpr.step) ?? 1n;
      if (step === 0n) throw new ConfigError('slice step cannot be zero');
      if (obj.t === 'str') return pyStrV(sliceItems([...obj.v], lo, hi, step).join(''));
      if (obj.t === 'list' || obj.t === 'tuple' || obj.t === 'range') {
        const items = sliceItems(iterate(obj), lo, hi, step);
        return obj.t === 'tuple' ? { t: 'tuple', v: items } : { t: 'list', v: items };
      }
      throw new ConfigError(`'${typeName(obj)}' object cannot be sliced`);
    }
    const index = this.eval(indexExpr);
    if (obj.t === 'dict') {
      const hit = obj.v.get(hashKey(index));
      if (!hit) throw new ConfigError(`key ${pyRepr(index)} is not in the dict`);
      return hit[1];
    }
    if (obj.t === 'str' || obj.t === 'list' || obj.t === 'tuple' || obj.t === 'range') {
      if (!isIntLike(index)) throw new ConfigError(`indices must be integers, not '${typeName(index)}'`);
      const items = obj.t === 'str' ? [...obj.v].map(pyStrV) : iterate(obj);
      let i = bigOf(index);
      if (i < 0n) i += BigInt(items.length);
      if (i < 0n || i >= BigInt(items.length)) throw new ConfigError(`index ${bigOf(index)} out of range`);
      return items[Number(i)]!;
    }
    throw new ConfigError(`'${typeName(obj)}' object is not subscriptable`);
  }

  private callBuiltin(fn: { t: 'func'; name: string; self?: PyValue }, args: PyValue[], kwargs: Map<string, PyValue>): PyValue {
    const noKw = (): void => {
      if (kwargs.size) throw new ConfigError(`${fn.name}() takes no keyword arguments here`);
    };
    const nArgs = (min: number, max: number): void => {
      noKw();
      if (args.length < min || args.length > max) throw new ConfigError(`${fn.name}() takes ${min === max ? min : `${min} to ${max}`} arguments (${args.length} given)`);
    };
    const strArg = (v: PyValue | undefined, what: string): string => {
      if (v?.t !== 'str') throw new ConfigError(`${fn.name}() needs a string ${what}`);
      return v.v;
    };
    const intArg = (v: PyValue): bigint => {
      if (!isIntLike(v)) throw new ConfigError(`${fn.name}() needs integers, not '${typeName(v)}'`);
      return bigOf(v);
    };
    switch (fn.name) {
      case 'range':
      case 'xrange': {
        nArgs(1, 3);
        const ints = args.map(intArg);
        const [start, stop, step] = ints.length === 1 ? [0n, ints[0]!, 1n] : [ints[0]!, ints[1]!, ints[2] ?? 1n];
        if (step === 0n) throw new ConfigError('range() step must not be zero');
        return { t: 'range', start, stop, step };
      }
      case 'len': {
        nArgs(1, 1);
        const v = args[0]!;
        if (v.t === 'str') return pyInt(BigInt([...v.v].length));
        if (v.t === 'list' || v.t === 'tuple') return pyInt(BigInt(v.v.length));
        if (v.t === 'dict') return pyInt(BigInt(v.v.size));
        if (v.t === 'range') return pyInt(rangeLength(v));
        throw new ConfigError(`object of type '${typeName(v)}' has no len()`);
      }
      case 'list':
      case 'tuple': {
        nArgs(0, 1);
        const items = args.length ? [...iterate(args[0]!)] : [];
        this.tick(items.length);
        return fn.name === 'list' ? { t: 'list', v: items } : { t: 'tuple', v: items };
      }
      case 'dict': {
        if (args.length > 1) throw new ConfigError('dict() takes at most 1 positional argument');
        const m = new Map<string, [PyValue, PyValue]>();
        if (args.length) {
          const src = args[0]!;
          if (src.t === 'dict') for (const [k, kv] of src.v) m.set(k, kv);
          else
            for (const pair of iterate(src)) {
              const kv = iterate(pair);
              if (kv.length !== 2) throw new ConfigError('dict() needs (key, value) pairs');
              m.set(hashKey(kv[0]!), [kv[0]!, kv[1]!]);
            }
        }
        for (const [k, v] of kwargs) m.set(hashKey(pyStrV(k)), [pyStrV(k), v]);
        return { t: 'dict', v: m };
      }
      case 'int': {
        if (kwargs.size) throw new ConfigError('int() keyword arguments are not supported');
        if (args.length === 0) return pyInt(0n);
        const v = args[0]!;
        if (args.length === 2) {
          const base = Number(intArg(args[1]!));
          const s = strArg(v, 'with a base').trim().replace(/_/g, '').toLowerCase();
          const digits = '0123456789abcdefghijklmnopqrstuvwxyz'.slice(0, base);
          const body = s.replace(/^[+-]/, '').replace(base === 16 ? /^0x/ : base === 8 ? /^0o/ : base === 2 ? /^0b/ : /^$/, '');
          if (base < 2 || base > 36 || !body || [...body].some((c) => !digits.includes(c))) throw new ConfigError(`invalid literal for int() with base ${base}: ${strRepr(s)}`);
          let n = 0n;
          for (const c of body) n = n * BigInt(base) + BigInt(digits.indexOf(c));
          return checkInt(s.startsWith('-') ? -n : n);
        }
        if (args.length > 2) throw new ConfigError('int() takes at most 2 arguments');
        if (isIntLike(v)) return pyInt(bigOf(v));
        if (v.t === 'float') {
          if (!Number.isFinite(v.v)) throw new ConfigError(`cannot convert ${floatRepr(v.v)} to an integer`);
          return pyInt(BigInt(Math.trunc(v.v)));
        }
        if (v.t === 'str' && /^\s*[+-]?\d(?:_?\d)*\s*$/.test(v.v)) return checkInt(BigInt(v.v.trim().replace(/_/g, '')));
        throw new ConfigError(`invalid literal for int(): ${pyRepr(v)}`);
      }
      case 'float': {
        nArgs(0, 1);
        if (!args.length) return pyFloat(0);
        const v = args[0]!;
        if (isNumber(v)) return pyFloat(toFloat(v));
        if (v.t === 'str') {
          const s = v.v.trim().toLowerCase().replace(/_/g, '');
          if (/^[+-]?(inf|infinity)$/.test(s)) return pyFloat(s.startsWith('-') ? -Infinity : Infinity);
          if (/^[+-]?nan$/.test(s)) return pyFloat(NaN);
          if (/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/.test(s)) return pyFloat(Number(s));
        }
        throw new ConfigError(`could not convert ${pyRepr(v)} to float`);
      }
      case 'str':
        nArgs(0, 1);
        return pyStrV(args.length ? pyStr(args[0]!) : '');
      case 'bool':
        nArgs(0, 1);
        return pyBool(args.length ? truthy(args[0]!) : false);
      case 'abs': {
        nArgs(1, 1);
        const v = args[0]!;
        if (v.t === 'float') return pyFloat(Math.abs(v.v));
        if (isIntLike(v)) return pyInt(bigOf(v) < 0n ? -bigOf(v) : bigOf(v));
        throw new ConfigError(`bad operand type for abs(): '${typeName(v)}'`);
      }
      case 'min':
      case 'max': {
        noKw();
        const items = args.length === 1 ? iterate(args[0]!) : args;
        if (!items.length) throw new ConfigError(`${fn.name}() of an empty sequence`);
        let best = items[0]!;
        for (const x of items.slice(1)) if (compare(x, best, fn.name === 'min' ? '<' : '>')) best = x;
        return best;
      }
      case 'sum': {
        nArgs(1, 2);
        let acc: PyValue = args[1] ?? pyInt(0n);
        for (const x of iterate(args[0]!)) {
          this.tick();
          acc = this.binary('+', acc, x);
        }
        return acc;
      }
      case 'enumerate': {
        const start = kwargs.get('start') ?? args[1] ?? pyInt(0n);
        if (args.length < 1 || args.length > 2 || [...kwargs.keys()].some((k) => k !== 'start')) throw new ConfigError('enumerate() takes an iterable and a start');
        const s = intArg(start);
        return { t: 'list', v: iterate(args[0]!).map((x, i) => ({ t: 'tuple', v: [pyInt(s + BigInt(i)), x] })) };
      }
      case 'zip': {
        noKw();
        const lists = args.map(iterate);
        const n = lists.length ? Math.min(...lists.map((l) => l.length)) : 0;
        return { t: 'list', v: Array.from({ length: n }, (_, i) => ({ t: 'tuple', v: lists.map((l) => l[i]!) }) as PyValue) };
      }
      case 'sorted': {
        if ([...kwargs.keys()].some((k) => k !== 'reverse')) throw new ConfigError('sorted() only supports reverse=');
        nArgsLoose(args, 1, 1, fn.name);
        const items = [...iterate(args[0]!)];
        this.tick(items.length * Math.max(1, Math.ceil(Math.log2(items.length + 1))));
        items.sort((x, y) => (pyEquals(x, y) ? 0 : compare(x, y, '<') ? -1 : 1));
        if (kwargs.has('reverse') && truthy(kwargs.get('reverse')!)) items.reverse();
        return { t: 'list', v: items };
      }
      case 'reversed':
        nArgs(1, 1);
        return { t: 'list', v: [...iterate(args[0]!)].reverse() };
      case 'os.path.join': {
        nArgs(1, Infinity);
        let out = '';
        for (const a of args) {
          const s = strArg(a, 'path');
          if (s.startsWith('/')) out = s;
          else if (out === '' || out.endsWith('/')) out += s;
          else out += '/' + s;
        }
        return pyStrV(checkStr(out));
      }
      case 'os.path.expanduser': {
        nArgs(1, 1);
        const s = strArg(args[0], 'path');
        if (s !== '~' && !s.startsWith('~/')) return pyStrV(s);
        if (this.home === undefined) throw new ConfigError('os.path.expanduser() needs the home folder, which was not given');
        return pyStrV(this.home.replace(/\/$/, '') + s.slice(1) || '/');
      }
      case 'os.path.basename': {
        nArgs(1, 1);
        const s = strArg(args[0], 'path');
        return pyStrV(s.slice(s.lastIndexOf('/') + 1));
      }
      case 'os.path.dirname': {
        nArgs(1, 1);
        const s = strArg(args[0], 'path');
        const head = s.slice(0, s.lastIndexOf('/') + 1);
        return pyStrV(head && head !== '/'.repeat(head.length) ? head.replace(/\/+$/, '') : head);
      }
      default:
        return this.callMethod(fn, args, kwargs);
    }
  }

  private callMethod(fn: { t: 'func'; name: string; self?: PyValue }, args: PyValue[], kwargs: Map<string, PyValue>): PyValue {
    const self = fn.self!;
    const method = fn.name.slice(fn.name.indexOf('.') + 1);
    const argc = (min: number, max: number): void => {
      if (kwargs.size && method !== 'format') throw new ConfigError(`${fn.name}() takes no keyword arguments here`);
      if (args.length < min || args.length > max) throw new ConfigError(`${fn.name}() takes ${min === max ? min : `${min} to ${max}`} arguments (${args.length} given)`);
    };
    const str = (v: PyValue | undefined): string => {
      if (v?.t !== 'str') throw new ConfigError(`${fn.name}() needs string arguments`);
      return v.v;
    };
    if (self.t === 'str') {
      const s = self.v;
      switch (method) {
        case 'format':
          return pyStrV(strFormat(s, args, kwargs));
        case 'join': {
          argc(1, 1);
          const parts = iterate(args[0]!).map((p) => str(p));
          return pyStrV(checkStr(parts.join(s)));
        }
        case 'replace': {
          argc(2, 3);
          const count = args[2] ? Number(bigOf(args[2])) : -1;
          const [from, to] = [str(args[0]), str(args[1])];
          if (count < 0) return pyStrV(checkStr(from === '' ? [...s].join(to).replace(/^/, to) + to : s.split(from).join(to)));
          let out = s;
          let k = 0;
          let idx = 0;
          while (k < count && from !== '' && (idx = out.indexOf(from, idx)) >= 0) {
            out = out.slice(0, idx) + to + out.slice(idx + from.length);
            idx += to.length;
            k++;
          }
          return pyStrV(checkStr(out));
        }
        case 'lower':
          argc(0, 0);
          return pyStrV(s.toLowerCase());
        case 'upper':
          argc(0, 0);
          return pyStrV(s.toUpperCase());
        case 'strip':
        case 'lstrip':
        case 'rstrip': {
          argc(0, 1);
          const chars = args[0] && args[0].t !== 'none' ? str(args[0]) : ' \t\n\r\f\v';
          let a = 0;
          let b = s.length;
          if (method !== 'rstrip') while (a < b && chars.includes(s[a]!)) a++;
          if (method !== 'lstrip') while (b > a && chars.includes(s[b - 1]!)) b--;
          return pyStrV(s.slice(a, b));
        }
        case 'zfill': {
          argc(1, 1);
          const width = Number(bigOf(args[0]!));
          if (width > MAX_STR) throw new ConfigError('zfill width too large');
          const sign = s[0] === '-' || s[0] === '+' ? s[0] : '';
          return pyStrV(sign + s.slice(sign.length).padStart(width - sign.length, '0'));
        }
        case 'startswith':
        case 'endswith': {
          argc(1, 1);
          const options = args[0]!.t === 'tuple' ? (args[0] as { v: PyValue[] }).v.map(str) : [str(args[0])];
          return pyBool(options.some((o) => (method === 'startswith' ? s.startsWith(o) : s.endsWith(o))));
        }
      }
    }
    if (self.t === 'list') {
      argc(1, 1);
      if (method === 'append') {
        checkItems(self.v.length + 1);
        self.v.push(args[0]!);
      } else {
        const items = iterate(args[0]!);
        checkItems(self.v.length + items.length);
        this.tick(items.length);
        self.v.push(...items);
      }
      return NONE;
    }
    if (self.t === 'dict') {
      if (method === 'get') {
        argc(1, 2);
        return self.v.get(hashKey(args[0]!))?.[1] ?? args[1] ?? NONE;
      }
      argc(0, 0);
      const entries = [...self.v.values()];
      if (method === 'keys') return { t: 'list', v: entries.map(([k]) => k) };
      if (method === 'values') return { t: 'list', v: entries.map(([, v]) => v) };
      return { t: 'list', v: entries.map(([k, v]) => ({ t: 'tuple', v: [k, v] }) as PyValue) };
    }
    throw new ConfigError(`${fn.name}() is not supported`);
  }
}

function nArgsLoose(args: PyValue[], min: number, max: number, name: string): void {
  if (args.length < min || args.length > max) throw new ConfigError(`${name}() takes ${min === max ? min : `${min} to ${max}`} arguments (${args.length} given)`);
}

function isImplemented(fn: { name: string; self?: PyValue }): boolean {
  if (fn.self) return true;
  if (BUILTINS.has(fn.name)) return true;
  return fn.name.startsWith('os.path.') && OS_PATH_FUNCS.has(fn.name.slice('os.path.'.length));
}

function floorDiv(x: bigint, y: bigint): bigint {
  const q = x / y;
  return (x % y !== 0n && (x < 0n) !== (y < 0n)) ? q - 1n : q;
}

/** Python's float arithmetic (floor division and modulo follow the divisor's sign). */
function floatBinary(op: string, x: number, y: number): number {
  switch (op) {
    case '+':
      return x + y;
    case '-':
      return x - y;
    case '*':
      return x * y;
    case '/':
      if (y === 0) throw new ConfigError('float division by zero');
      return x / y;
    case '%':
    case '//': {
      if (y === 0) throw new ConfigError('float modulo by zero');
      let mod = x % y;
      if (mod !== 0) {
        if (y < 0 !== mod < 0) mod += y;
      } else mod = y < 0 ? -0 : 0;
      if (op === '%') return mod;
      const div = (x - mod) / y;
      if (div === 0) return x / y < 0 ? -0 : 0;
      let floordiv = Math.floor(div);
      if (div - floordiv > 0.5) floordiv += 1;
      return floordiv;
    }
    case '**': {
      if (x === 0 && y < 0) throw new ConfigError('0.0 cannot be raised to a negative power');
      if (x < 0 && !Number.isInteger(y)) throw new ConfigError('negative number raised to a fractional power gives a complex number');
      const r = Math.pow(x, y);
      if (!Number.isFinite(r) && Number.isFinite(x) && Number.isFinite(y)) throw new ConfigError('numerical result out of range');
      return r;
    }
    default:
      throw new ConfigError(`operator '${op}' is not supported`);
  }
}

function sliceItems<T>(items: T[], lo: bigint | null, hi: bigint | null, step: bigint): T[] {
  const n = BigInt(items.length);
  const clamp = (v: bigint, lower: bigint, upper: bigint): bigint => (v < lower ? lower : v > upper ? upper : v);
  const norm = (v: bigint | null, dflt: bigint, lower: bigint, upper: bigint): bigint => (v === null ? dflt : clamp(v < 0n ? v + n : v, lower, upper));
  const out: T[] = [];
  spend(items.length);
  if (step > 0n) {
    const a = norm(lo, 0n, 0n, n);
    const b = norm(hi, n, 0n, n);
    for (let i = a; i < b; i += step) out.push(items[Number(i)]!);
  } else {
    const a = norm(lo, n - 1n, -1n, n - 1n);
    const b = norm(hi, -1n, -1n, n - 1n);
    for (let i = a; i > b; i += step) out.push(items[Number(i)]!);
  }
  return out;
}

// ------------------------------------------------------------------------------------------------
// statements

const BLOCK_KEYWORDS: Record<string, string> = {
  if: 'conditional block',
  elif: 'conditional block',
  else: 'conditional block',
  for: 'loop',
  while: 'loop',
  def: 'function definition',
  class: 'class definition',
  with: "'with' block",
  try: "'try' block",
  except: "'try' block",
  finally: "'try' block",
  async: 'async block',
};
const CONTINUATION_KEYWORDS = new Set(['elif', 'else', 'except', 'finally']);
const AUG_OPS: Record<string, string> = { '+=': '+', '-=': '-', '*=': '*', '/=': '/', '//=': '//', '%=': '%', '**=': '**' };
const UNSUPPORTED_AUG = new Set(['&=', '|=', '^=', '<<=', '>>=', '@=']);
const SIMPLE_STATEMENTS: Record<string, string> = {
  global: "'global' statement",
  nonlocal: "'nonlocal' statement",
  assert: "'assert' statement",
  raise: "'raise' statement",
  return: "'return' outside a function",
  yield: "'yield' outside a function",
  break: "'break' outside a loop",
  continue: "'continue' outside a loop",
  await: "'await' expression",
};

function clip(text: string): string {
  const t = text.trim();
  return t.length > MAX_TEXT ? `${t.slice(0, MAX_TEXT - 3)}...` : t;
}

/** Split a token list at top-level occurrences of `sep`. */
function splitTop(tokens: Token[], sep: (t: Token) => boolean): Token[][] {
  const parts: Token[][] = [[]];
  for (const t of tokens) {
    if (t.depth === 0 && sep(t)) parts.push([]);
    else parts[parts.length - 1]!.push(t);
  }
  return parts;
}

/** Names a skipped statement would (re)bind or change: targets of `=`, `+=`, `for`, `def`, `del`, `import`, mutating calls; '*' when it could change anything. */
function namesTouched(tokens: Token[]): string[] {
  const names = new Set<string>();
  const visit = (stmt: Token[]): void => {
    if (!stmt.length) return;
    const first = stmt[0]!;
    if (first.kind === 'name') {
      if ((first.text === 'def' || first.text === 'class') && stmt[1]?.kind === 'name') names.add(stmt[1].text);
      if (first.text === 'for' || first.text === 'del' || first.text === 'global') {
        for (const t of stmt.slice(1)) {
          if (t.kind === 'name' && t.text === 'in') break;
          if (t.kind === 'name' && !RESERVED.has(t.text)) names.add(t.text);
        }
      }
      if (first.text === 'import' || first.text === 'from') for (const n of importedNames(stmt)) names.add(n);
      if (first.text in BLOCK_KEYWORDS) {
        // a one-line block `if x: y = 1` has its body after the header's ':'
        const colon = stmt.findIndex((t) => t.depth === 0 && t.kind === 'op' && t.text === ':');
        if (colon >= 0) visit(stmt.slice(colon + 1));
        stmt.forEach((t, i) => {
          if (t.kind === 'name' && t.text === 'as' && stmt[i + 1]?.kind === 'name') names.add(stmt[i + 1]!.text);
        });
        return;
      }
    }
    const segments = splitTop(stmt, (t) => t.kind === 'op' && (t.text === '=' || t.text in AUG_OPS || UNSUPPORTED_AUG.has(t.text)));
    for (const seg of segments.slice(0, -1)) {
      seg.forEach((t, i) => {
        if (t.kind === 'name' && t.depth === 0 && !RESERVED.has(t.text) && seg[i - 1]?.text !== '.') names.add(t.text);
      });
    }
    // name.append(...), name.update(...): a method call may change the object in place
    if (first.kind === 'name' && stmt[1]?.kind === 'op' && stmt[1].text === '.') names.add(first.text);
  };
  for (const stmt of splitTop(tokens, (t) => t.kind === 'op' && t.text === ';')) visit(stmt);
  if (tokens.some((t) => t.kind === 'name' && ['exec', 'execfile', 'globals', 'locals', 'vars', 'setattr', '__import__'].includes(t.text))) names.add('*');
  return [...names];
}

function importedNames(stmt: Token[]): string[] {
  const out: string[] = [];
  const isFrom = stmt[0]!.text === 'from';
  const start = isFrom ? stmt.findIndex((t) => t.kind === 'name' && t.text === 'import') + 1 : 1;
  if (start <= 0) return out;
  for (const part of splitTop(stmt.slice(start), (t) => t.kind === 'op' && t.text === ',')) {
    const names = part.filter((t) => t.kind === 'name');
    if (!names.length) continue;
    const asIdx = names.findIndex((t) => t.text === 'as');
    if (asIdx >= 0 && names[asIdx + 1]) out.push(names[asIdx + 1]!.text);
    else if (part.some((t) => t.text === '*')) out.push('*');
    else out.push(names[0]!.text);
  }
  if (stmt.some((t) => t.kind === 'op' && t.text === '*')) out.push('*');
  return out;
}

class Interpreter {
  readonly ev: Evaluator;
  readonly unread: UnreadStatement[] = [];
  readonly touched = new Map<string, number[]>();
  /** Source of the statements that bound variables, by first line (for values that turn out too large to import). */
  readonly statementText = new Map<number, { text: string; endLine: number }>();

  constructor(
    private readonly src: string,
    home: string | undefined,
  ) {
    this.ev = new Evaluator(home);
  }

  skip(line: number, endLine: number, text: string, reason: string, names: string[]): UnreadStatement {
    const u: UnreadStatement = { line, endLine, text: clip(text), reason, names };
    this.unread.push(u);
    for (const n of names) {
      const lines = this.touched.get(n) ?? [];
      if (!lines.includes(line)) lines.push(line);
      this.touched.set(n, lines);
    }
    return u;
  }

  run(): void {
    const lines = tokenize(this.src);
    let block: { entry: UnreadStatement; kind: string; headerLine: number } | null = null;
    let lastWasBlock = false;
    for (const ll of lines) {
      const text = this.src.slice(ll.start, ll.end);
      if (ll.indent > 0 && block) {
        block.entry.endLine = ll.endLine;
        block.entry.reason = blockReason(block.kind, block.headerLine, ll.endLine);
        for (const n of namesTouched(ll.tokens)) this.addTouched(block.entry, n);
        continue;
      }
      if (ll.error) {
        block = null;
        lastWasBlock = false;
        this.skip(ll.line, ll.endLine, text, `cannot read this: ${ll.error}`, namesTouched(ll.tokens));
        continue;
      }
      if (ll.indent > 0) {
        block = null;
        lastWasBlock = false;
        this.skip(ll.line, ll.endLine, text, 'unexpected indentation: this line is not inside a block that lazylabel reads', namesTouched(ll.tokens));
        continue;
      }
      const first = ll.tokens[0]!;
      const kw = first.kind === 'name' && first.text in BLOCK_KEYWORDS ? first.text : first.kind === 'op' && first.text === '@' ? '@' : null;
      if (kw) {
        const kind = kw === '@' ? 'decorated definition' : BLOCK_KEYWORDS[kw]!;
        const header = this.src.slice(ll.start, ll.end).split('\n')[0]!;
        if (CONTINUATION_KEYWORDS.has(kw) && block && lastWasBlock) {
          block.entry.endLine = ll.endLine;
          block.entry.reason = blockReason(block.kind, block.headerLine, ll.endLine);
          for (const n of namesTouched(ll.tokens)) this.addTouched(block.entry, n);
        } else {
          const entry = this.skip(ll.line, ll.endLine, header, blockReason(kind, ll.line, ll.endLine), namesTouched(ll.tokens));
          block = { entry, kind, headerLine: ll.line };
        }
        lastWasBlock = true;
        continue;
      }
      block = null;
      lastWasBlock = false;
      for (const stmt of splitTop(ll.tokens, (t) => t.kind === 'op' && t.text === ';')) {
        if (stmt.length) this.statement(stmt);
      }
    }
  }

  private addTouched(entry: UnreadStatement, name: string): void {
    if (!entry.names.includes(name)) entry.names.push(name);
    const lines = this.touched.get(name) ?? [];
    if (!lines.includes(entry.line)) lines.push(entry.line);
    this.touched.set(name, lines);
  }

  private statement(tokens: Token[]): void {
    newStatementBudget();
    const first = tokens[0]!;
    const last = tokens[tokens.length - 1]!;
    const line = first.line;
    const endLine = last.line + (this.src.slice(last.start, last.end).match(/\n/g)?.length ?? 0);
    const text = this.src.slice(first.start, last.end);
    const skip = (reason: string, names = namesTouched(tokens)): void => {
      this.skip(line, endLine, text, reason, names);
    };
    if (!this.statementText.has(line)) this.statementText.set(line, { text: clip(text), endLine });
    try {
      if (first.kind === 'name') {
        switch (first.text) {
          case 'import':
          case 'from':
            return skip('import statements are never executed');
          case 'pass':
            if (tokens.length === 1) return;
            break;
          case 'del':
            return this.del(tokens.slice(1), line, skip);
          case 'print':
            if (!(tokens[1]?.kind === 'op' && tokens[1].text === '(')) return skip("Python 2 'print' statement: not run");
            break;
          case 'exec':
            if (!(tokens[1]?.kind === 'op' && tokens[1].text === '(')) return skip("Python 2 'exec' statement: never executed");
            break;
          default:
            if (first.text in SIMPLE_STATEMENTS) return skip(`${SIMPLE_STATEMENTS[first.text]}: not run`);
        }
      }
      const aug = tokens.find((t) => t.depth === 0 && t.kind === 'op' && (t.text in AUG_OPS || UNSUPPORTED_AUG.has(t.text)));
      if (aug) return this.augAssign(tokens, aug, line, skip);
      const segments = splitTop(tokens, (t) => t.kind === 'op' && t.text === '=');
      if (segments.length > 1) return this.assign(segments, line, skip);
      this.expressionStatement(tokens, skip);
    } catch (e) {
      if (e instanceof ConfigError) return skip(e.message);
      if (e instanceof RangeError) return skip('too deeply nested or too large to read');
      throw e;
    }
  }

  private parse(tokens: Token[]): Expr {
    if (!tokens.length) throw syntax('an expression is missing');
    return new Parser(tokens, this.src).parseAll();
  }

  private assign(segments: Token[][], line: number, skip: (reason: string, names?: string[]) => void): void {
    let targets: Expr[];
    try {
      targets = segments.slice(0, -1).map((seg) => this.parseTarget(seg));
    } catch (e) {
      if (e instanceof ConfigError) return skip(e.message);
      throw e;
    }
    const bound = targets.flatMap(targetNames);
    let value: PyValue;
    try {
      value = this.ev.eval(this.parse(segments[segments.length - 1]!));
    } catch (e) {
      if (!(e instanceof ConfigError) && !(e instanceof RangeError)) throw e;
      const reason = e instanceof ConfigError ? e.message : 'too deeply nested or too large to read';
      this.fail(targets, line, reason);
      return skip(reason, bound);
    }
    try {
      for (const t of targets) this.bind(t, value, line);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      this.fail(targets, line, e.message);
      skip(e.message, bound);
    }
  }

  private parseTarget(seg: Token[]): Expr {
    // annotated assignment `x: int = 3`
    const colon = seg.findIndex((t) => t.depth === 0 && t.kind === 'op' && t.text === ':');
    const t = this.parse(colon > 0 ? seg.slice(0, colon) : seg);
    checkTarget(t);
    return t;
  }

  /** The variables an assignment that could not be read would have changed: their value is now unknown. */
  private fail(targets: Expr[], line: number, reason: string): void {
    for (const t of targets) {
      if (t.k === 'sub') {
        this.ev.scope.set(targetNames(t)[0]!, { ok: false, reason: `an item assignment to it could not be read: ${reason}`, line });
      } else for (const name of targetNames(t)) this.ev.scope.set(name, { ok: false, reason, line });
    }
  }

  private bind(target: Expr, value: PyValue, line: number): void {
    switch (target.k) {
      case 'name':
        this.ev.scope.set(target.id, { ok: true, value, line });
        return;
      case 'tuple':
      case 'list': {
        const items = iterate(value);
        if (items.length !== target.items.length) throw new ConfigError(`cannot unpack ${items.length} values into ${target.items.length} targets`);
        target.items.forEach((t, i) => this.bind(t, items[i]!, line));
        return;
      }
      case 'sub': {
        const container = this.ev.eval(target.obj);
        if (target.index.k === 'slice') throw new ConfigError('slice assignment is not supported');
        const key = this.ev.eval(target.index);
        if (container.t === 'dict') container.v.set(hashKey(key), [key, value]);
        else if (container.t === 'list') {
          if (!isIntLike(key)) throw new ConfigError('list indices must be integers');
          let i = bigOf(key);
          if (i < 0n) i += BigInt(container.v.length);
          if (i < 0n || i >= BigInt(container.v.length)) throw new ConfigError('list assignment index out of range');
          container.v[Number(i)] = value;
        } else throw new ConfigError(`'${typeName(container)}' object does not support item assignment`);
        const base = targetNames(target)[0]!;
        const b = this.ev.scope.get(base);
        if (b?.ok) b.line = line;
        return;
      }
      default:
        throw new ConfigError('cannot assign to this');
    }
  }

  private augAssign(tokens: Token[], aug: Token, line: number, skip: (reason: string, names?: string[]) => void): void {
    const idx = tokens.indexOf(aug);
    const target = this.parse(tokens.slice(0, idx));
    if (target.k !== 'name' && target.k !== 'sub') return skip('augmented assignment to this target is not supported');
    checkTarget(target);
    const names = targetNames(target);
    if (UNSUPPORTED_AUG.has(aug.text)) {
      this.fail([target], line, `operator '${aug.text}' is not supported`);
      return skip(`operator '${aug.text}' is not supported`, names);
    }
    try {
      const current = target.k === 'name' ? this.ev.lookup(target.id) : this.ev.subscript(this.ev.eval(target.obj), target.index);
      const rhs = this.ev.eval(this.parse(tokens.slice(idx + 1)));
      let result: PyValue;
      if (aug.text === '+=' && current.t === 'list') {
        // list += iterable extends in place (aliases see it, as in Python)
        const items = iterate(rhs);
        checkItems(current.v.length + items.length);
        current.v.push(...items);
        result = current;
      } else result = this.ev.binary(AUG_OPS[aug.text]!, current, rhs);
      this.bind(target, result, line);
    } catch (e) {
      if (!(e instanceof ConfigError) && !(e instanceof RangeError)) throw e;
      const reason = e instanceof ConfigError ? e.message : 'too deeply nested or too large to read';
      this.fail([target], line, reason);
      skip(reason, names);
    }
  }

  private del(tokens: Token[], line: number, skip: (reason: string, names?: string[]) => void): void {
    const target = this.parse(tokens);
    const items = target.k === 'tuple' || target.k === 'list' ? target.items : [target];
    for (const t of items) {
      if (t.k === 'name') {
        // `del i` after a comprehension (ELEKTRONN's docs ask for it): Python 2 leaks the loop variable, Python 3 does not
        this.ev.scope.delete(t.id);
      } else if (t.k === 'sub' && t.index.k !== 'slice') {
        const container = this.ev.eval(t.obj);
        const key = this.ev.eval(t.index);
        if (container.t === 'dict') {
          if (!container.v.delete(hashKey(key))) throw new ConfigError(`key ${pyRepr(key)} is not in the dict`);
        } else if (container.t === 'list' && isIntLike(key)) {
          let i = bigOf(key);
          if (i < 0n) i += BigInt(container.v.length);
          if (i < 0n || i >= BigInt(container.v.length)) throw new ConfigError('list index out of range');
          container.v.splice(Number(i), 1);
        } else throw new ConfigError(`cannot delete items of '${typeName(container)}'`);
        const b = this.ev.scope.get(targetNames(t)[0]!);
        if (b?.ok) b.line = line;
      } else return skip('this del statement is not supported');
    }
  }

  private expressionStatement(tokens: Token[], skip: (reason: string, names?: string[]) => void): void {
    if (tokens.every((t) => t.kind === 'string')) return; // a docstring
    const e = this.parse(tokens);
    // name.append(x) / name.extend(xs) / name.update... : the supported in-place changes
    if (e.k === 'call' && e.fn.k === 'attr' && e.fn.obj.k === 'name' && LIST_METHODS.has(e.fn.name)) {
      const base = e.fn.obj.id;
      try {
        this.ev.eval(e);
        const b = this.ev.scope.get(base);
        if (b?.ok) b.line = tokens[0]!.line;
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        this.ev.scope.set(base, { ok: false, reason: `${e.fn.name}() on it could not be read: ${err.message}`, line: tokens[0]!.line });
        skip(err.message, [base]);
      }
      return;
    }
    const call = firstCall(e);
    if (call) {
      const what = call.text.length > 60 ? `${call.text.slice(0, 57)}...` : call.text;
      return skip(`${what} is a call, and calls are never executed (lazylabel reads configs, it does not run them)`);
    }
    skip('an expression on its own line changes no setting: not evaluated');
  }
}

function blockReason(kind: string, from: number, to: number): string {
  const span = from === to ? `line ${from}` : `lines ${from}-${to}`;
  return `${kind} skipped (${span}): lazylabel does not run code, so nothing inside it is applied`;
}

function checkTarget(t: Expr): void {
  if (t.k === 'name') {
    if (t.id === 'True' || t.id === 'False' || t.id === 'None') throw new ConfigError(`cannot assign to ${t.id}`);
    return;
  }
  if (t.k === 'tuple' || t.k === 'list') {
    t.items.forEach(checkTarget);
    return;
  }
  if (t.k === 'sub') {
    // name[i] = ..., name[i][j] = ...: an item of a variable
    let base: Expr = t;
    while (base.k === 'sub') base = base.obj;
    if (base.k === 'name') return;
    if (base.k === 'attr') throw new ConfigError(`assignment to an item of ${base.text} is not supported`);
  }
  if (t.k === 'attr') throw new ConfigError(`assignment to the attribute ${t.text} is not supported`);
  throw new ConfigError('assignment to this target is not supported');
}

function targetNames(t: Expr): string[] {
  if (t.k === 'name') return [t.id];
  if (t.k === 'tuple' || t.k === 'list') return t.items.flatMap(targetNames);
  if (t.k === 'sub') return targetNames(t.obj);
  if (t.k === 'attr') return targetNames(t.obj);
  return [];
}

function firstCall(e: Expr): Extract<Expr, { k: 'call' }> | null {
  const kids = (x: Expr): Expr[] => {
    switch (x.k) {
      case 'call':
        return [];
      case 'tuple':
      case 'list':
        return x.items;
      case 'dict':
        return x.entries.flat();
      case 'comp':
        return [x.elt, ...x.clauses.map((c) => (c.k === 'for' ? c.iter : c.cond))];
      case 'unary':
      case 'not':
        return [x.x];
      case 'bin':
        return [x.a, x.b];
      case 'bool':
        return x.xs;
      case 'cmp':
        return [x.first, ...x.rest];
      case 'ifexp':
        return [x.test, x.body, x.orelse];
      case 'attr':
        return [x.obj];
      case 'sub':
        return [x.obj, x.index];
      case 'fstr':
        return x.parts.flatMap((p) => (typeof p === 'string' ? [] : [p.expr]));
      default:
        return [];
    }
  };
  if (e.k === 'call') return e;
  for (const k of kids(e)) {
    const c = firstCall(k);
    if (c) return c;
  }
  return null;
}

/**
 * Parse and evaluate an ELEKTRONN config. Never throws for config contents: anything it cannot read
 * is listed in `unread` (line, text, reason) and the rest is still read.
 */
export function parseElektronnConfig(source: string, options: ParseOptions = {}): ParsedConfig {
  const src = source.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  totalLeft = MAX_TOTAL_STEPS;
  newStatementBudget();
  const interp = new Interpreter(src, options.home);
  interp.run();
  const py = new Map<string, PyValue>();
  const lines = new Map<string, number>();
  const failed = new Map<string, { line: number; reason: string }>();
  const entries: [string, JsValue][] = [];
  // conversion gets its own budget: a statement that used up the evaluation budget must not block the others
  totalLeft = MAX_TOTAL_STEPS;
  for (const [name, b] of interp.ev.scope) {
    if (!b.ok) {
      failed.set(name, { line: b.line, reason: b.reason });
      continue;
    }
    if (b.value.t === 'func' || b.value.t === 'module') continue;
    newStatementBudget();
    try {
      entries.push([name, pyToJs(b.value)]);
      py.set(name, b.value);
      lines.set(name, b.line);
    } catch (e) {
      if (!(e instanceof ConfigError) && !(e instanceof RangeError)) throw e;
      const reason = e instanceof ConfigError ? e.message : 'too large to import';
      failed.set(name, { line: b.line, reason });
      const st = interp.statementText.get(b.line);
      interp.skip(b.line, st?.endLine ?? b.line, st?.text ?? name, `${name}: ${reason}`, [name]);
    }
  }
  interp.unread.sort((a, b) => a.line - b.line);
  const values = Object.fromEntries(entries) as Record<string, JsValue>;
  return { values, py, lines, failed, unread: interp.unread, touched: interp.touched };
}

/**
 * `qmigrate analyze FILE [--dump-ram DIR] [--pretty]`: a saved migration stream as one JSON
 * document (src/migration/stream/analyze.ts has its shape), the counterpart of QEMU's
 * scripts/analyze-migration.py (`-f FILE`, and `-x` for --dump-ram). A wrong stream is one
 * line with the byte offset and section, exit 1.
 */
import {
  closeSync,
  constants,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  rmdirSync,
  rmSync,
  writeSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import {
  analyzeFile,
  analyzeStream,
  type RamSink,
  type StreamAnalysis,
} from '../../migration/stream/analyze.js';
import { QemuFileReader, StreamError } from '../../migration/stream/qemu-file.js';
import { errnoText } from '../../util/errno.js';
import { Interrupted } from '../errors.js';

export interface AnalyzeFlags {
  dumpRam?: string;
  pretty?: boolean;
}

export interface AnalyzeIo {
  /** Writes the document; resolves once it is handed to the output. */
  out(text: string): Promise<void>;
  err(line: string): void;
  stdin: Readable;
}

/**
 * A RAM block's name as a file name inside the dump directory: letters, digits and `_@+-.`
 * stay, anything else (`/` first of all) becomes `%XX` of its UTF-8 bytes, and a leading `.`
 * too, so the name is never `.`, `..` or hidden and two blocks never share a file.
 * `/rom@etc/acpi/tables` -> `%2From@etc%2Facpi%2Ftables`.
 */
export function ramFileName(name: string): string {
  if (name === '') return '%';
  const enc = (s: string) =>
    [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
  return name.replace(/^\.|[^A-Za-z0-9_@+.-]/gu, enc);
}

/** Largest run of contiguous pages written in one call. */
const RUN = 1 << 20;
const ZERO_PAGE = Buffer.alloc(4096);

/**
 * Writes each RAM block to DIR/<ramFileName>: the file is made the block's size (zeros), and
 * page records are written in stream order (a later record of a page wins, as on a
 * destination), contiguous pages in one write.
 */
export class RamDumper implements RamSink {
  readonly #dir: string;
  readonly #fds: number[] = [];
  readonly files: string[] = [];
  #run = Buffer.allocUnsafe(RUN);
  #runIndex = -1;
  #runStart = 0;
  #runLength = 0;

  /** The first directory of DIR's path this run created, removed again on failure. */
  readonly #created: string | undefined;

  constructor(dir: string) {
    this.#dir = dir;
    this.#created = mkdirSync(dir, { recursive: true });
  }

  block(index: number, name: string, length: number): void {
    const path = join(this.#dir, ramFileName(name));
    // Guest memory: 0600, as qmigrate's other guest-memory files; a symlink left in DIR is
    // refused (ELOOP), never followed to a file outside it.
    const fd = openSync(
      path,
      constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
      0o600,
    );
    this.#fds[index] = fd;
    this.files.push(path);
    ftruncateSync(fd, length);
  }

  page(index: number, offset: number, data: Buffer | undefined, hadData: boolean): void {
    // A zero page over nothing earlier is already zero in the file.
    if (!data && !hadData) return;
    const bytes = data ?? ZERO_PAGE;
    if (index !== this.#runIndex || offset !== this.#runStart + this.#runLength || this.#runLength === RUN) {
      this.flush();
      this.#runIndex = index;
      this.#runStart = offset;
    }
    bytes.copy(this.#run, this.#runLength);
    this.#runLength += bytes.length;
  }

  flush(): void {
    if (this.#runLength > 0)
      writeSync(this.#fds[this.#runIndex]!, this.#run, 0, this.#runLength, this.#runStart);
    this.#runLength = 0;
  }

  /** Flushes and closes; `remove` deletes the files (the analysis failed). */
  /** The directories this run made, leaf first, each only if empty (a failed run leaves none). */
  #removeCreated(): void {
    if (this.#created === undefined) return;
    const top = resolve(this.#created);
    for (let d = resolve(this.#dir); ; d = dirname(d)) {
      try {
        rmdirSync(d);
      } catch {
        return;
      }
      if (d === top || dirname(d) === d) return;
    }
  }

  close(remove: boolean): void {
    try {
      if (!remove) this.flush();
    } finally {
      for (const fd of this.#fds) if (fd !== undefined) closeSync(fd);
      if (remove) {
        for (const f of this.files) rmSync(f, { force: true });
        this.#removeCreated();
      }
    }
  }
}

/** A pipe's stream, stopped by `signal` at its next wait for bytes. */
async function analyzePipe(
  input: Readable,
  sink: RamSink | undefined,
  signal?: AbortSignal,
): Promise<StreamAnalysis> {
  const reader = new QemuFileReader(input);
  const stop = () => reader.fail(signal!.reason);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    return await analyzeStream(reader, { sink });
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}

/**
 * Control characters (a newline, a terminal escape) of names a corrupt stream carries, as
 * `\xHH`, so the error stays one line and cannot drive the terminal.
 */
function printable(s: string): string {
  return Array.from(s, (c) => {
    const k = c.charCodeAt(0);
    return k < 0x20 || (k >= 0x7f && k < 0xa0) ? `\\x${k.toString(16).padStart(2, '0')}` : c;
  }).join('');
}

/** The one line a failure prints (without the `qmigrate analyze: FILE: ` prefix). */
function describe(e: unknown): string | undefined {
  if (e instanceof StreamError)
    return printable(`at byte ${e.offset}${e.section ? ` (section ${e.section})` : ''}: ${e.message}`);
  const sys = e as NodeJS.ErrnoException;
  if (typeof sys?.code === 'string' && typeof sys.syscall === 'string') {
    const what = sys.path ? ` ${sys.path}` : '';
    return `cannot ${sys.syscall}${what}: ${errnoText(sys.code) ?? sys.message}`;
  }
  return undefined;
}

/**
 * Runs the analysis and prints the document.
 * @returns 0, or 1 when the stream is wrong or cannot be read (one line on `err`).
 * @throws {Interrupted} when `signal` aborts (the dump's files are removed).
 */
export async function runAnalyze(
  file: string,
  flags: AnalyzeFlags,
  io: AnalyzeIo,
  signal?: AbortSignal,
): Promise<number> {
  let dumper: RamDumper | undefined;
  let result: StreamAnalysis | undefined;
  if (flags.dumpRam !== undefined) {
    // DIR's own failure names --dump-ram, not the stream (mkdir on a file said `FILE: cannot
    // mkdir DIR: File exists`).
    try {
      dumper = new RamDumper(flags.dumpRam);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException)?.code;
      const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'not a directory' : (describe(e) ?? String(e));
      io.err(`qmigrate analyze: --dump-ram ${printable(flags.dumpRam)}: ${why}`);
      return 1;
    }
  }
  try {
    // Standard input redirected from a file is read as that file (its VM description first).
    result =
      file === '-' && !fstatSync(0).isFile()
        ? await analyzePipe(io.stdin, dumper, signal)
        : await analyzeFile(file === '-' ? '/dev/stdin' : file, dumper, signal);
  } catch (e) {
    dumper?.close(true);
    if (signal?.aborted) throw signal.reason;
    const line = describe(e);
    if (line === undefined || e instanceof Interrupted) throw e;
    io.err(`qmigrate analyze: ${file === '-' ? '(stdin)' : file}: ${line}`);
    return 1;
  }
  dumper?.close(false);
  await io.out(`${JSON.stringify(result, null, flags.pretty ? 2 : undefined)}\n`);
  return 0;
}
